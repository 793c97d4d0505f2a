/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sock_lookup.h - a flow key as the kernel's socket lookups take it (bpf_sk_lookup_udp,
 * bpf_skc_lookup_tcp): the SNAT claim skips ports a local socket holds (snat.h), the second
 * chance asks whether this node holds a flow (decap.bpf.c).
 */
#ifndef SY_LIB_SOCK_LOOKUP_H
#define SY_LIB_SOCK_LOOKUP_H

#include "common.h"

/* Fills *tuple from the flow key t (saddr:sport -> daddr:dport, as the packet travels) and
 * returns the length the lookup helpers expect for its family. */
static __always_inline __u32 sock_tuple_of(const struct sy_ct_key *t, struct bpf_sock_tuple *tuple)
{
	if (t->family == SY_AF_INET) {
		tuple->ipv4.saddr = t->saddr.words[3];
		tuple->ipv4.daddr = t->daddr.words[3];
		tuple->ipv4.sport = t->sport;
		tuple->ipv4.dport = t->dport;
		return sizeof(tuple->ipv4);
	}
	__builtin_memcpy(tuple->ipv6.saddr, t->saddr.words, 16);
	__builtin_memcpy(tuple->ipv6.daddr, t->daddr.words, 16);
	tuple->ipv6.sport = t->sport;
	tuple->ipv6.dport = t->dport;
	return sizeof(tuple->ipv6);
}

#endif /* SY_LIB_SOCK_LOOKUP_H */
