/* SPDX-License-Identifier: Apache-2.0 */
/*
 * addr.h - struct sy_addr helpers: IPv4 as IPv4-mapped IPv6, comparisons, loopback.
 */
#ifndef SY_LIB_ADDR_H
#define SY_LIB_ADDR_H

#include "common.h"

static __always_inline void addr_from_ip4(struct sy_addr *a, __u32 ip4_be)
{
	a->words[0] = 0;
	a->words[1] = 0;
	a->words[2] = bpf_htonl(0x0000ffff);
	a->words[3] = ip4_be;
}

static __always_inline int addr_is_v4_mapped(const struct sy_addr *a)
{
	return a->words[0] == 0 && a->words[1] == 0 && a->words[2] == bpf_htonl(0x0000ffff);
}

static __always_inline int addr_is_loopback(const struct sy_addr *a, __u8 family)
{
	if (family == SY_AF_INET)
		return (bpf_ntohl(a->words[3]) >> 24) == 127;
	return a->words[0] == 0 && a->words[1] == 0 && a->words[2] == 0 &&
	       a->words[3] == bpf_htonl(1);
}

static __always_inline int addr_eq(const struct sy_addr *a, const struct sy_addr *b)
{
	return a->words[0] == b->words[0] && a->words[1] == b->words[1] &&
	       a->words[2] == b->words[2] && a->words[3] == b->words[3];
}

#endif /* SY_LIB_ADDR_H */
