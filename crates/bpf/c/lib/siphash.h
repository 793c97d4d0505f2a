/* SPDX-License-Identifier: Apache-2.0 */
/*
 * siphash.h - the one hash (SipHash-2-4, as crates/maglev) and the two messages the programs
 * hash with it: the socket cookie (socket path) and the 5-tuple (per-packet path). Compiles
 * for the BPF target and the host alike: the layout probes print golden values from it that
 * the Rust tests compare with crates/maglev.
 */
#ifndef SY_LIB_SIPHASH_H
#define SY_LIB_SIPHASH_H

#include <linux/types.h>
#include "switchyard.h"
#include "compiler.h"

/* ---- the one hash (crates/maglev/src/siphash.rs, docs/maglev.md) ----
 * SipHash: little-endian message words, length in the top byte of the last word. Written for
 * the BPF target and the host alike (the layout probe prints golden values that the Rust tests
 * compare with crates/maglev). Tables and socket cookies use SipHash-2-4; the per-packet flow
 * hash uses SY_FLOW_C_ROUNDS per word and SY_FLOW_D_ROUNDS to finish (crates/maglev's
 * FLOW_HASH_C_ROUNDS / FLOW_HASH_D_ROUNDS). len must be a compile-time constant in BPF
 * programs so the loops unroll. */
#ifndef SY_FLOW_C_ROUNDS /* defined before only by the cost variants of the benches */
#define SY_FLOW_C_ROUNDS 1
#define SY_FLOW_D_ROUNDS 3
#endif

static __always_inline __u64 sy_rotl64(__u64 x, int b)
{
	return (x << b) | (x >> (64 - b));
}

#define SY_SIPROUND(v0, v1, v2, v3)                                                        \
	do {                                                                               \
		v0 += v1; v1 = sy_rotl64(v1, 13); v1 ^= v0; v0 = sy_rotl64(v0, 32);      \
		v2 += v3; v3 = sy_rotl64(v3, 16); v3 ^= v2;                              \
		v0 += v3; v3 = sy_rotl64(v3, 21); v3 ^= v0;                              \
		v2 += v1; v1 = sy_rotl64(v1, 17); v1 ^= v2; v2 = sy_rotl64(v2, 32);      \
	} while (0)

/* n SipRounds on v0..v3 of the enclosing scope (n a constant: the branches fold away). */
#define SY_SIPROUNDS(n)                                                                    \
	do {                                                                               \
		SY_SIPROUND(v0, v1, v2, v3);                                               \
		if ((n) > 1)                                                               \
			SY_SIPROUND(v0, v1, v2, v3);                                       \
		if ((n) > 2)                                                               \
			SY_SIPROUND(v0, v1, v2, v3);                                       \
		if ((n) > 3)                                                               \
			SY_SIPROUND(v0, v1, v2, v3);                                       \
	} while (0)

/* SipHash in pieces, for messages whose words are built from fields (no array, no loop:
 * every word stays in a register): start, compress each full little-endian word, finish with
 * the last word (the remaining bytes, little-endian, with the length in the top byte). */
#define SY_SIP_INIT(k0, k1)                                                                 \
	do {                                                                               \
		v0 = (k0) ^ 0x736f6d6570736575ull;                                         \
		v1 = (k1) ^ 0x646f72616e646f6dull;                                         \
		v2 = (k0) ^ 0x6c7967656e657261ull;                                         \
		v3 = (k1) ^ 0x7465646279746573ull;                                         \
	} while (0)

#define SY_SIP_WORD_C(w, c)                                                                 \
	do {                                                                               \
		__u64 w_ = (w);                                                            \
		v3 ^= w_;                                                                  \
		SY_SIPROUNDS(c);                                                           \
		v0 ^= w_;                                                                  \
	} while (0)

#define SY_SIP_FINISH_CD(last, c, d)                                                        \
	({                                                                                 \
		SY_SIP_WORD_C(last, c);                                                    \
		v2 ^= 0xff;                                                                \
		SY_SIPROUNDS(d);                                                           \
		v0 ^ v1 ^ v2 ^ v3;                                                         \
	})

/* SipHash-c-d of len bytes at msg, byte by byte (the socket cookie; the flow hash on a
 * big-endian host). */
static __always_inline __u64 sy_siphash_cd(__u64 k0, __u64 k1, const __u8 *msg, __u32 len,
					   const int c, const int d)
{
	__u64 v0, v1, v2, v3;
	__u64 word, last = (__u64)len << 56;
	__u32 i, j;

	SY_SIP_INIT(k0, k1);
	for (i = 0; i + 8 <= len; i += 8) {
		word = 0;
		for (j = 0; j < 8; j++)
			word |= (__u64)msg[i + j] << (8 * j);
		SY_SIP_WORD_C(word, c);
	}
	for (j = 0; i + j < len; j++)
		last |= (__u64)msg[i + j] << (8 * j);
	return SY_SIP_FINISH_CD(last, c, d);
}

static __always_inline __u64 sy_siphash24(__u64 k0, __u64 k1, const __u8 *msg, __u32 len)
{
	return sy_siphash_cd(k0, k1, msg, len, 2, 4);
}

/* Socket-path Maglev hash: SipHash-2-4 of the socket cookie as 8 little-endian bytes. Each
 * socket is its own flow, so the cookie stands in for the 5-tuple the per-packet path hashes. */
static __always_inline __u64 sy_sock_hash(const struct sy_config *cfg, __u64 cookie)
{
	__u8 msg[8];
	__u32 j;

	for (j = 0; j < 8; j++)
		msg[j] = (__u8)(cookie >> (8 * j));
	return sy_siphash24(cfg->hash_k0, cfg->hash_k1, msg, 8);
}

/* ---- the per-packet flow hash (crates/maglev FlowKey::to_bytes, docs/maglev.md) ----
 * SipHash-c-d (SY_FLOW_*_ROUNDS) of, in network byte order: the destination address, port
 * and protocol, zero bytes up to a whole 8-byte word, then the source address and port. 14
 * bytes for IPv4, 42 for IPv6. The VIP's part comes first and fills whole words, so the state
 * after it depends on the key and the VIP alone: the director keeps it per VIP (struct
 * sy_flow_prefix) and hashes per packet only the source's words (IPv4: 1, IPv6: 3) and the
 * finalization. On a little-endian machine (the BPF target here, and the host the probes run
 * on) the message words are the fields' own loads put side by side, no byte shuffling: a u32
 * or u16 loaded from memory is already the little-endian value of its bytes. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The VIP's words into v0..v3 (the state after SY_SIP_INIT). */
#define SY_FLOW_ABSORB_VIP(t)                                                              \
	do {                                                                               \
		const __u32 *d_ = (t)->daddr.words;                                        \
		__u64 pp_ = (__u64)(t)->dport | (__u64)(t)->proto << 16;                   \
		if ((t)->family == SY_AF_INET) {                                           \
			SY_SIP_WORD_C((__u64)d_[3] | pp_ << 32, SY_FLOW_C_ROUNDS);         \
		} else {                                                                   \
			SY_SIP_WORD_C((__u64)d_[0] | (__u64)d_[1] << 32, SY_FLOW_C_ROUNDS); \
			SY_SIP_WORD_C((__u64)d_[2] | (__u64)d_[3] << 32, SY_FLOW_C_ROUNDS); \
			SY_SIP_WORD_C(pp_, SY_FLOW_C_ROUNDS);                              \
		}                                                                          \
	} while (0)

/* The source's words and the finalization, from the state after the VIP's words. */
static __always_inline __u64 sy_flow_finish(__u64 v0, __u64 v1, __u64 v2, __u64 v3,
					    const struct sy_ct_key *t)
{
	const __u32 *s = t->saddr.words;
	__u64 sport = t->sport;

	if (t->family == SY_AF_INET)
		return SY_SIP_FINISH_CD((__u64)s[3] | sport << 32 | 14ull << 56, SY_FLOW_C_ROUNDS,
					SY_FLOW_D_ROUNDS);
	SY_SIP_WORD_C((__u64)s[0] | (__u64)s[1] << 32, SY_FLOW_C_ROUNDS);
	SY_SIP_WORD_C((__u64)s[2] | (__u64)s[3] << 32, SY_FLOW_C_ROUNDS);
	return SY_SIP_FINISH_CD(sport | 42ull << 56, SY_FLOW_C_ROUNDS, SY_FLOW_D_ROUNDS);
}
#endif

/* The flow hash of t from scratch (the node programs; the director when a VIP's prefix was
 * made under another key). */
static __always_inline __u64 sy_flow_hash_key(__u64 k0, __u64 k1, const struct sy_ct_key *t)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	__u64 v0, v1, v2, v3;

	SY_SIP_INIT(k0, k1);
	SY_FLOW_ABSORB_VIP(t);
	return sy_flow_finish(v0, v1, v2, v3, t);
#else
	__u8 msg[42] = {};
	__u32 n = t->family == SY_AF_INET ? 4 : 16, at = t->family == SY_AF_INET ? 8 : 24;
	const __u8 *s = t->family == SY_AF_INET ? &t->saddr.bytes[12] : t->saddr.bytes;
	const __u8 *d = t->family == SY_AF_INET ? &t->daddr.bytes[12] : t->daddr.bytes;

	__builtin_memcpy(msg, d, n);
	__builtin_memcpy(msg + n, &t->dport, 2);
	msg[n + 2] = t->proto;
	__builtin_memcpy(msg + at, s, n);
	__builtin_memcpy(msg + at + n, &t->sport, 2);
	return sy_siphash_cd(k0, k1, msg, at + n + 2, SY_FLOW_C_ROUNDS, SY_FLOW_D_ROUNDS);
#endif
}

static __always_inline __u64 sy_flow_hash_inline(const struct sy_config *cfg,
						 const struct sy_ct_key *t)
{
	return sy_flow_hash_key(cfg->hash_k0, cfg->hash_k1, t);
}

/* The state after the VIP's words of t under (k0, k1): what user space stores per VIP
 * (crates/maglev FlowPrefix); here for the layout probe, which compares it with Rust's. */
static __always_inline void sy_flow_prefix_of(__u64 k0, __u64 k1, const struct sy_ct_key *t,
					      struct sy_flow_prefix *p)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	__u64 v0, v1, v2, v3;

	SY_SIP_INIT(k0, k1);
	SY_FLOW_ABSORB_VIP(t);
	p->k0 = k0;
	p->k1 = k1;
	p->v[0] = v0;
	p->v[1] = v1;
	p->v[2] = v2;
	p->v[3] = v3;
#endif
}

/* The flow hash from scratch as a call of its own: the director's path for a VIP whose prefix
 * was made under another key (rare: only until user space has rewritten it), kept out of the
 * director's frame (its stack is at the limit). */
static SY_NOINLINE __u64 sy_flow_hash_slow(__u64 k0, __u64 k1, const struct sy_ct_key *t)
{
	return sy_flow_hash_key(k0, k1, t);
}

/* The director's flow hash of t (a packet to the VIP whose prefix is p) under the key
 * (k0, k1) of sy_dir_config: from the VIP's prefix when it was made under that key, else
 * from scratch. So a prefix left from another seed can never be used: the value is always
 * the flow hash under the configured key (the same function as sy_flow_hash). */
static __always_inline __u64 sy_flow_hash_prefixed(__u64 k0, __u64 k1,
						   const struct sy_flow_prefix *p,
						   const struct sy_ct_key *t)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (((p->k0 ^ k0) | (p->k1 ^ k1)) == 0)
		return sy_flow_finish(p->v[0], p->v[1], p->v[2], p->v[3], t);
#endif
	return sy_flow_hash_slow(k0, k1, t);
}

/* The same as a function of its own: the node programs call it from several places. The
 * director inlines sy_flow_hash_prefixed (one call site; a BPF-to-BPF call costs ≈ 20 ns there). */
static SY_NOINLINE __u64 sy_flow_hash(const struct sy_config *cfg, const struct sy_ct_key *t)
{
	return sy_flow_hash_inline(cfg, t);
}

#endif /* SY_LIB_SIPHASH_H */
