/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fib.h - forwarding a rewritten packet ourselves: bpf_fib_lookup on its new addresses, then
 * bpf_redirect (neighbour known) or bpf_redirect_neigh; anything else goes to the stack.
 */
#ifndef SY_LIB_FIB_H
#define SY_LIB_FIB_H

#include <linux/pkt_cls.h>
#include "parse.h"

#define AF_INET_FIB 2
#define AF_INET6_FIB 10

struct route {
	int rc; /* BPF_FIB_LKUP_RET_* or negative error */
	__u32 ifindex;
	__u32 mtu;
	__u8 dmac[ETH_ALEN]; /* then smac: the frame's first 12 bytes, written in one store */
	__u8 smac[ETH_ALEN];
};

/* bpf_fib_lookup from s to d (family, transport protocol l4); tot_len 0: the kernel checks the
 * skb itself against the MTU (TC), else this length (XDP, encapsulation). */
static __always_inline void route_lookup_len(struct __ctx_buff *skb, __u8 family, __u8 l4,
					     const struct sy_addr *s, const struct sy_addr *d,
					     __u32 tot_len, struct route *r)
{
	struct bpf_fib_lookup f = {};

	f.ifindex = ctx_ingress_ifindex(skb);
	f.l4_protocol = l4;
	f.tot_len = tot_len;
	if (family == SY_AF_INET) {
		f.family = AF_INET_FIB;
		f.ipv4_src = s->words[3];
		f.ipv4_dst = d->words[3];
	} else {
		f.family = AF_INET6_FIB;
		__builtin_memcpy(f.ipv6_src, s->words, 16);
		__builtin_memcpy(f.ipv6_dst, d->words, 16);
	}
	r->rc = bpf_fib_lookup(skb, &f, sizeof(f), 0);
	r->ifindex = f.ifindex;
	r->mtu = f.mtu_result;
	__builtin_memcpy(r->smac, f.smac, ETH_ALEN);
	__builtin_memcpy(r->dmac, f.dmac, ETH_ALEN);
}

static __always_inline void route_lookup(struct __ctx_buff *skb, const struct pkt *p,
					 const struct sy_addr *s, const struct sy_addr *d,
					 struct route *r)
{
#ifdef SY_CTX_XDP
	/* XDP has no skb to measure: the MTU check needs the length (TC checks the skb, GSO
	 * packets included, when tot_len is 0). */
	route_lookup_len(skb, p->t.family, p->t.proto, s, d, p->ip_len, r);
#else
	route_lookup_len(skb, p->t.family, p->t.proto, s, d, 0, r);
#endif
}

#ifndef SY_CTX_XDP
/* After the rewrite: send along the looked-up route, or let the stack route. */
static __always_inline int forward(struct __sk_buff *skb, const struct route *r)
{
	if (r->rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(skb, 0, r->dmac, 2 * ETH_ALEN, 0))
			return TC_ACT_SHOT;
		return bpf_redirect(r->ifindex, 0);
	}
	if (r->rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(r->ifindex, NULL, 0, 0);
	return TC_ACT_OK;
}
#endif /* !SY_CTX_XDP */

#endif /* SY_LIB_FIB_H */
