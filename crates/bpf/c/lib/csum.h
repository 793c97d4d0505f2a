/* SPDX-License-Identifier: Apache-2.0 */
/*
 * csum.h - Internet checksum helpers: folding a bpf_csum_diff() sum, sums of field changes
 * computed in registers (RFC 1624), and where the transport checksum of a parsed packet sits.
 */
#ifndef SY_LIB_CSUM_H
#define SY_LIB_CSUM_H

#include "parse.h"

static __always_inline __u16 csum_fold(__s64 sum)
{
	__u32 c = (__u32)sum;

	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

/* Folds a sum of 16- and 32-bit words (below 2^40) to 16 bits, end-around carry. */
static __always_inline __u16 csum_fold64(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* The sum of what replacing the 32-bit word from by to changes (0 if equal: nothing to add). */
static __always_inline __u64 csum_diff32(__u32 from, __u32 to)
{
	return from == to ? 0 : (__u64)(__u32)~from + to;
}

static __always_inline __u64 csum_diff16(__u16 from, __u16 to)
{
	return from == to ? 0 : (__u64)(__u16)~from + to;
}

static __always_inline __u64 csum_diff_addr(const struct sy_addr *from, const struct sy_addr *to)
{
	return csum_diff32(from->words[0], to->words[0]) + csum_diff32(from->words[1], to->words[1]) +
	       csum_diff32(from->words[2], to->words[2]) + csum_diff32(from->words[3], to->words[3]);
}

/* The checksum check after changes summing to diff (RFC 1624 eqn. 3). */
static __always_inline __u16 csum_apply(__u16 check, __u64 diff)
{
	return ~csum_fold64((__u64)(__u16)~check + diff);
}

/* A sum of changes as bpf_csum_diff() returns it (a 32-bit partial sum), for the skb helpers'
 * "by difference" updates (bpf_l3/l4_csum_replace with size 0). */
static __always_inline __u32 csum_fold32(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	return (__u32)s;
}

static __always_inline __u32 l4_csum_off(const struct pkt *p)
{
	return p->l4_off + (p->t.proto == IPPROTO_TCP ? 16 : 6);
}

static __always_inline __u64 l4_csum_flags(const struct pkt *p)
{
	return p->t.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

#endif /* SY_LIB_CSUM_H */
