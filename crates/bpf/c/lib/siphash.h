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
 * SipHash-2-4: little-endian message words, length in the top byte of the last word. Written
 * for the BPF target and the host alike (the layout probe prints golden values that the Rust
 * tests compare with crates/maglev). len must be a compile-time constant in BPF programs so
 * the loops unroll. */
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

/* SipHash-2-4 in pieces, for messages whose words are built from fields (no array, no loop:
 * every word stays in a register): start, compress each full little-endian word, finish with
 * the last word (the remaining bytes, little-endian, with the length in the top byte). */
#define SY_SIP_START(k0, k1)                                                                \
	__u64 v0 = (k0) ^ 0x736f6d6570736575ull, v1 = (k1) ^ 0x646f72616e646f6dull;        \
	__u64 v2 = (k0) ^ 0x6c7967656e657261ull, v3 = (k1) ^ 0x7465646279746573ull

#define SY_SIP_WORD(w)                                                                      \
	do {                                                                               \
		__u64 w_ = (w);                                                            \
		v3 ^= w_;                                                                  \
		SY_SIPROUND(v0, v1, v2, v3);                                               \
		SY_SIPROUND(v0, v1, v2, v3);                                               \
		v0 ^= w_;                                                                  \
	} while (0)

#define SY_SIP_FINISH(last)                                                                 \
	({                                                                                 \
		SY_SIP_WORD(last);                                                         \
		v2 ^= 0xff;                                                                \
		SY_SIPROUND(v0, v1, v2, v3);                                               \
		SY_SIPROUND(v0, v1, v2, v3);                                               \
		SY_SIPROUND(v0, v1, v2, v3);                                               \
		SY_SIPROUND(v0, v1, v2, v3);                                               \
		v0 ^ v1 ^ v2 ^ v3;                                                         \
	})

static __always_inline __u64 sy_siphash24(__u64 k0, __u64 k1, const __u8 *msg, __u32 len)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ull;
	__u64 v1 = k1 ^ 0x646f72616e646f6dull;
	__u64 v2 = k0 ^ 0x6c7967656e657261ull;
	__u64 v3 = k1 ^ 0x7465646279746573ull;
	__u64 word, last = (__u64)len << 56;
	__u32 i, j;

	for (i = 0; i + 8 <= len; i += 8) {
		word = 0;
		for (j = 0; j < 8; j++)
			word |= (__u64)msg[i + j] << (8 * j);
		v3 ^= word;
		SY_SIPROUND(v0, v1, v2, v3);
		SY_SIPROUND(v0, v1, v2, v3);
		v0 ^= word;
	}
	for (j = 0; i + j < len; j++)
		last |= (__u64)msg[i + j] << (8 * j);
	v3 ^= last;
	SY_SIPROUND(v0, v1, v2, v3);
	SY_SIPROUND(v0, v1, v2, v3);
	v0 ^= last;
	v2 ^= 0xff;
	SY_SIPROUND(v0, v1, v2, v3);
	SY_SIPROUND(v0, v1, v2, v3);
	SY_SIPROUND(v0, v1, v2, v3);
	SY_SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
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

/* Per-packet Maglev hash: SipHash-2-4 of the flow key as crates/maglev FlowKey::to_bytes lays
 * it out (13 bytes for IPv4, 37 for IPv6): saddr daddr sport dport proto, network order.
 * On a little-endian machine (the BPF target here, and the host the probes run on) the
 * message words are the fields' own loads put side by side, no byte shuffling: a u32 or u16
 * loaded from memory is already the little-endian value of its bytes. */
static __always_inline __u64 sy_flow_hash_inline(const struct sy_config *cfg,
						 const struct sy_ct_key *t)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	__u64 tail = (__u64)t->sport | (__u64)t->dport << 16 | (__u64)t->proto << 32;
	const __u32 *s = t->saddr.words, *d = t->daddr.words;

	if (t->family == SY_AF_INET) {
		SY_SIP_START(cfg->hash_k0, cfg->hash_k1);
		SY_SIP_WORD((__u64)s[3] | (__u64)d[3] << 32);
		return SY_SIP_FINISH(tail | 13ull << 56);
	} else {
		SY_SIP_START(cfg->hash_k0, cfg->hash_k1);
		SY_SIP_WORD((__u64)s[0] | (__u64)s[1] << 32);
		SY_SIP_WORD((__u64)s[2] | (__u64)s[3] << 32);
		SY_SIP_WORD((__u64)d[0] | (__u64)d[1] << 32);
		SY_SIP_WORD((__u64)d[2] | (__u64)d[3] << 32);
		return SY_SIP_FINISH(tail | 37ull << 56);
	}
#else
	if (t->family == SY_AF_INET) {
		__u8 msg[13];

		__builtin_memcpy(msg, &t->saddr.words[3], 4);
		__builtin_memcpy(msg + 4, &t->daddr.words[3], 4);
		__builtin_memcpy(msg + 8, &t->sport, 2);
		__builtin_memcpy(msg + 10, &t->dport, 2);
		msg[12] = t->proto;
		return sy_siphash24(cfg->hash_k0, cfg->hash_k1, msg, 13);
	} else {
		__u8 msg[37];

		__builtin_memcpy(msg, t->saddr.bytes, 16);
		__builtin_memcpy(msg + 16, t->daddr.bytes, 16);
		__builtin_memcpy(msg + 32, &t->sport, 2);
		__builtin_memcpy(msg + 34, &t->dport, 2);
		msg[36] = t->proto;
		return sy_siphash24(cfg->hash_k0, cfg->hash_k1, msg, 37);
	}
#endif
}

/* The same as a function of its own: the node programs call it from several places. The
 * director inlines sy_flow_hash_inline (one call site; a BPF-to-BPF call costs ≈ 20 ns there). */
static SY_NOINLINE __u64 sy_flow_hash(const struct sy_config *cfg, const struct sy_ct_key *t)
{
	return sy_flow_hash_inline(cfg, t);
}

#endif /* SY_LIB_SIPHASH_H */
