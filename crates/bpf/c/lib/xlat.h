/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xlat.h - translating a packet of a tracked flow (forward direction from its conntrack entry,
 * replies from sy_nat) and forwarding it, or answering frag-needed when the route is too small.
 * The XDP program uses the targets (struct xlat) and forwards on its own (nodeport_xdp.bpf.c).
 */
#ifndef SY_LIB_XLAT_H
#define SY_LIB_XLAT_H

#include "nat.h"
#include "conntrack.h"
#include "fib.h"
#include "route_cache.h"
#ifndef SY_CTX_XDP
#include "icmp.h"
#endif

/* The new tuple of a translated packet and what to count. */
struct xlat {
	struct sy_addr s;
	struct sy_addr d;
	__be16 sp;
	__be16 dp;
	__u32 reason;
	__u32 ingress;
	__u32 mtu; /* out: next-hop MTU when NF_TOO_BIG is returned */
};

/* translate_and_forward(): the packet is too big for the route (x->mtu); the caller answers
 * with frag-needed / packet-too-big (kept out of the callee to bound the BPF stack). */
#define NF_TOO_BIG 102

#ifndef SY_CTX_XDP
/* Too big for the route: tell the sender (from the address it used) instead of dropping. */
static SY_NOINLINE int answer_too_big(struct __sk_buff *skb, const struct pkt *p, __u32 mtu)
{
	int err;

	if (p->t.family == SY_AF_INET)
		err = answer_icmp(skb, p, ICMP_DEST_UNREACH_, ICMP_FRAG_NEEDED_, mtu);
	else
		err = answer_icmp(skb, p, ICMP6_PKT_TOO_BIG_, 0, mtu);
	if (err)
		return drop(skb, p, SY_REASON_PKT_DROP_NO_ANSWER);
	return send_back(skb, SY_REASON_PKT_FRAG_NEEDED);
}


static SY_NOINLINE int translate_and_forward(struct __sk_buff *skb, const struct pkt *p,
					      struct xlat *x)
{
	struct route r = {};
	const struct sy_addr *s = &x->s, *d = &x->d;
	__be16 sp = x->sp, dp = x->dp;
	__u32 reason = x->reason;
	int ingress = x->ingress;

	if (ingress) {
		tc_route(skb, p, s, d, &r);
		if (r.rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && p->df) {
			x->mtu = r.mtu;
			return NF_TOO_BIG;
		}
	}
	if (rewrite(skb, p, s, sp, d, dp))
		return drop(skb, p, SY_REASON_PKT_DROP_REWRITE);
	sy_count(reason, skb->len);
	if (!ingress)
		return TC_ACT_OK;
	return forward(skb, &r);
}

#endif /* !SY_CTX_XDP */

/* ---- replies ---- */

/* A reply of the flow n passes: TCP state, per-Service traffic (both directions count). */
static __always_inline void reply_seen(struct pkt *p, const struct sy_nat_entry *n, __u64 now,
				       __u32 len)
{
	struct sy_ct_entry *e = bpf_map_lookup_elem(&sy_ct, &n->orig);

	if (e) {
		ct_update(e, p, 1, now);
		/* 0: a DSR flow's entry on the backend's node (the frontend is another node's). */
		if (e->frontend_id)
			sy_count_frontend(e->frontend_id, 0, 1, len);
	}
}

/* Where a reply of a translated flow goes (backend -> client / node:port becomes frontend ->
 * client); no side effects, so the XDP program can look at the route before it commits. */
static __always_inline void reply_target(struct xlat *x, const struct sy_nat_entry *n,
					 int ingress)
{
	x->s = n->orig.daddr;
	x->sp = n->orig.dport;
	x->d = n->orig.saddr;
	x->dp = n->orig.sport;
	x->ingress = ingress;
	x->reason = SY_REASON_PKT_REVNAT;
}

/* A reply of a translated flow: make it frontend -> client. */
static __always_inline void reply_xlat(struct xlat *x, struct pkt *p,
				       const struct sy_nat_entry *n, int ingress, __u64 now,
				       __u32 len)
{
	reply_seen(p, n, now, len);
	reply_target(x, n, ingress);
}

/* Forward direction of a flow with conntrack entry e (a map value: copied). */
static __always_inline void ct_xlat(struct xlat *x, const struct sy_ct_entry *e, __u32 reason)
{
	x->s = e->nat_saddr;
	x->sp = e->nat_sport;
	x->d = e->nat_daddr;
	x->dp = e->nat_dport;
	x->ingress = 1;
	x->reason = reason;
}

#ifndef SY_CTX_XDP
/* Apply x; answer frag-needed / packet-too-big when the route is too small. */
static __always_inline int apply(struct __sk_buff *skb, const struct pkt *p, struct xlat *x)
{
	int rc = translate_and_forward(skb, p, x);

	if (rc == NF_TOO_BIG)
		return answer_too_big(skb, p, x->mtu);
	return rc;
}
#endif /* !SY_CTX_XDP */

#endif /* SY_LIB_XLAT_H */
