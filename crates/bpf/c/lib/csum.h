/* SPDX-License-Identifier: Apache-2.0 */
/*
 * csum.h - Internet checksum helpers: folding a bpf_csum_diff() sum, and where the transport
 * checksum of a parsed packet sits.
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

static __always_inline __u32 l4_csum_off(const struct pkt *p)
{
	return p->l4_off + (p->t.proto == IPPROTO_TCP ? 16 : 6);
}

static __always_inline __u64 l4_csum_flags(const struct pkt *p)
{
	return p->t.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

#endif /* SY_LIB_CSUM_H */
