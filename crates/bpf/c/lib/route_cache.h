/* SPDX-License-Identifier: Apache-2.0 */
/*
 * route_cache.h - the per-packet path's next hops, kept per CPU for a bounded time instead of
 * one bpf_fib_lookup per packet (the director's method, docs/director.md "Figures"): a route
 * lookup costs more than any other step of a forwarded packet, and a flow's next hop changes
 * rarely. Each CPU reuses a successful lookup for SY_NP_ROUTE_TTL_NS, for packets no longer
 * than the longest one a lookup accepted (a longer one is looked up: too big is then handled
 * as before), so a route, neighbour, MTU or XDP device change takes effect within that time.
 * Failed lookups are not kept. See docs/datapath.md "Next-hop cache".
 */
#ifndef SY_LIB_ROUTE_CACHE_H
#define SY_LIB_ROUTE_CACHE_H

#include "fib.h"

/* How long a CPU reuses a lookup: the bound on how stale a next hop may be. */
#define SY_NP_ROUTE_TTL_NS ((__u64)SY_NP_ROUTE_TTL_MS * 1000 * 1000)
/* Slots per CPU (a power of two), indexed by a hash of the two addresses; two pairs in one
 * slot take turns (each then looks up). */
#define SY_NP_ROUTE_SLOTS 1024

struct sy_np_route {
	struct sy_addr dst; /* tag: the addresses the lookup was made for */
	struct sy_addr src;
	__u64 expires_ns;   /* deadline (XDP: bpf_ktime_get_ns(), TC: bpf_ktime_get_coarse_ns()) */
	__u32 in_ifindex;   /* tag: the device the packet came in on (the lookup's input) */
	__u32 ifindex;      /* out device */
	__u32 ok_len;       /* the largest IP length a lookup accepted (route MTU >= it) */
	__u8 smac[ETH_ALEN];
	__u8 dmac[ETH_ALEN];
	__u8 proto;         /* tag: the lookup's transport protocol */
	__u8 xdp_out;       /* the out device runs the XDP program (nodeport_xdp.bpf.c; TC: 0) */
	__u8 pad[2];
};

/* An array (the lookup is inlined, unlike a hash's), per CPU (no locks, no torn entries);
 * not pinned: each object, and each new load, starts with an empty cache. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_np_route);
	__uint(max_entries, SY_NP_ROUTE_SLOTS);
} sy_np_routes SEC(".maps");

static __always_inline int np_addr_eq(const struct sy_addr *a, const struct sy_addr *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
}

/* This CPU's slot for the pair (a multiplicative hash of the addresses' words). */
static __always_inline struct sy_np_route *np_route_slot(const struct sy_addr *s,
							 const struct sy_addr *d)
{
	__u32 h = s->words[0] ^ s->words[1] ^ s->words[2] ^ s->words[3];
	__u32 g = d->words[0] ^ d->words[1] ^ d->words[2] ^ d->words[3];
	__u32 slot = ((h ^ (g << 16 | g >> 16)) * 0x9E3779B1u) >> (32 - 10);

	return bpf_map_lookup_elem(&sy_np_routes, &slot);
}

/* Whether r holds a fresh next hop from s to d for a packet of len bytes (IP length) of
 * transport protocol proto that came in on in. */
static __always_inline int np_route_hit(const struct sy_np_route *r, const struct sy_addr *s,
					const struct sy_addr *d, __u8 proto, __u32 in, __u32 len,
					__u64 now)
{
	return now < r->expires_ns && r->in_ifindex == in && r->proto == proto &&
	       len <= r->ok_len && np_addr_eq(&r->dst, d) && np_addr_eq(&r->src, s);
}

/* Keeps a successful lookup (r: the lookup's answer for a packet of len bytes) in c. */
static __always_inline void np_route_keep(struct sy_np_route *c, const struct route *r,
					  const struct sy_addr *s, const struct sy_addr *d,
					  __u8 proto, __u32 in, __u32 len, __u8 xdp_out, __u64 now)
{
	c->dst = *d;
	c->src = *s;
	c->in_ifindex = in;
	c->proto = proto;
	c->ifindex = r->ifindex;
	c->ok_len = len;
	c->xdp_out = xdp_out;
	__builtin_memcpy(c->smac, r->smac, ETH_ALEN);
	__builtin_memcpy(c->dmac, r->dmac, ETH_ALEN);
	c->expires_ns = now + SY_NP_ROUTE_TTL_NS;
}

#ifndef SY_CTX_XDP
/* The route of a translated packet at TC (fib.h's route_lookup): this CPU's cache entry for a
 * packet within the length a lookup accepted, else bpf_fib_lookup, kept when it succeeds. A GSO
 * packet is always looked up (the kernel checks its segments against the MTU). Only the
 * fields forward() reads are filled on a hit (rc, ifindex, MACs). */
static __always_inline void tc_route(struct __sk_buff *skb, const struct pkt *p,
				     const struct sy_addr *s, const struct sy_addr *d,
				     struct route *r)
{
	__u32 in = ctx_ingress_ifindex(skb);
	struct sy_np_route *c;
	__u64 now;

	if (skb->gso_segs > 1) {
		route_lookup(skb, p, s, d, r);
		return;
	}
	c = np_route_slot(s, d);
	now = bpf_ktime_get_coarse_ns();
	if (c && np_route_hit(c, s, d, p->t.proto, in, p->ip_len, now)) {
		r->rc = BPF_FIB_LKUP_RET_SUCCESS;
		r->ifindex = c->ifindex;
		__builtin_memcpy(r->dmac, c->dmac, ETH_ALEN);
		__builtin_memcpy(r->smac, c->smac, ETH_ALEN);
		return;
	}
	route_lookup(skb, p, s, d, r);
	if (c && r->rc == BPF_FIB_LKUP_RET_SUCCESS)
		np_route_keep(c, r, s, d, p->t.proto, in, p->ip_len, 0, now);
}
#endif /* !SY_CTX_XDP */

#endif /* SY_LIB_ROUTE_CACHE_H */
