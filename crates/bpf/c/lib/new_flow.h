/* SPDX-License-Identifier: Apache-2.0 */
/*
 * new_flow.h - the decision for a packet to a frontend without conntrack: source ranges, an
 * empty frontend, the pick (affinity, Maglev, random), SNAT, and the sy_nat / sy_ct entries.
 * Shared by the TC ingress program and the XDP program, so a flow is decided the same way
 * wherever it starts.
 */
#ifndef SY_LIB_NEW_FLOW_H
#define SY_LIB_NEW_FLOW_H

#include "siphash.h"
#include "lb.h"
#include "conntrack.h"
#include "snat.h"
#include "verdict.h"

/* loadBalancerSourceRanges: may this client use the frontend? */
static __always_inline int source_allowed(const struct sy_frontend *fe, const struct pkt *p)
{
	struct sy_src_range_key k = {};

	if (!(fe->flags & SY_FE_SOURCE_RANGES))
		return 1;
	k.prefixlen = 32 + 128;
	k.frontend_id = fe->id;
	k.addr = p->t.saddr;
	return bpf_map_lookup_elem(&sy_src_ranges, &k) != NULL;
}

/* ClientIP affinity keyed by the client address; fills pick when a valid choice exists. */
static __always_inline void affinity_lookup(const struct sy_frontend *fe, const struct pkt *p,
					    __u64 now, struct pick *pick)
{
	struct sy_affinity_key k = {};
	struct sy_affinity *a;

	k.client = p->t.saddr;
	k.frontend_id = fe->id;
	k.family = p->t.family;
	a = bpf_map_lookup_elem(&sy_affinity, &k);
	if (a && sy_age_ns(now, a->last_used_ns) <= (__u64)fe->affinity_timeout_s * NSEC_PER_SEC &&
	    choice_still_valid(fe, a)) {
		pick->backend_id = a->backend_id;
		pick->slot = a->slot;
		pick->reason = SY_REASON_PKT_AFFINITY;
	}
}

static __always_inline void affinity_store(const struct sy_frontend *fe, const struct pkt *p,
					   __u64 now, const struct pick *pick)
{
	struct sy_affinity_key k = {};
	struct sy_affinity v = {};

	k.client = p->t.saddr;
	k.frontend_id = fe->id;
	k.family = p->t.family;
	v.backend_id = pick->backend_id;
	v.slot = pick->slot;
	v.last_used_ns = now;
	bpf_map_update_elem(&sy_affinity, &k, &v, BPF_ANY);
}

/* DSR (SY_PKT_F_DSR): the address of the node a remote backend runs on, or NULL (DSR off, or
 * the node unknown: the flow is SNATed as without DSR). */
static __always_inline struct sy_addr *dsr_node_of(const struct sy_pkt_config *pcfg,
						   const struct sy_backend *be, __u8 proto)
{
	struct sy_node_addr_key k = {};

	if (!pcfg || !(pcfg->flags & SY_PKT_F_DSR))
		return NULL;
	/* The option's conntrack needs ports (ICMP echo is SNATed). */
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP_)
		return NULL;
	k.addr = be->addr;
	k.family = be->family;
	return bpf_map_lookup_elem(&sy_dsr_nodes, &k);
}

/* handle_new_flow() results besides CTX_ACT_*: the caller translates or rejects, so the deep
 * answer builders never stack on top of handle_new_flow (the combined BPF stack is 512 B). */
#define NF_TRANSLATE 100
#define NF_REJECT 101

/* A packet for a frontend without conntrack: choose a backend, claim a SNAT port, write
 * sy_nat and sy_ct. Returns NF_TRANSLATE, NF_REJECT or CTX_ACT_OK (no frontend) / a counted
 * drop. */
static SY_NOINLINE int handle_new_flow(struct __ctx_buff *skb, struct pkt *p,
					   const struct sy_pkt_config *pcfg, struct sy_ct_entry *old,
					   int from_pod)
{
	__u64 now = bpf_ktime_get_ns(); /* (BPF calls take at most five arguments) */
	struct sy_frontend *fe;
	struct sy_backend *be;
	struct pick pick = {};
	struct sy_ct_entry e = {};
	struct sy_nat_entry nat = {};
	struct sy_ct_key reply = {};
	__u32 fe_flags;
	int err, snat;

	/* From a pod: in-cluster traffic, so the internal scope of a split frontend. */
	fe = lookup_frontend(&p->t.daddr, p->t.dport, p->t.proto, p->t.family, from_pod, 0);
	if (!fe)
		return CTX_ACT_OK;
	fe_flags = fe->flags;

	if (!source_allowed(fe, p))
		return drop(skb, p, SY_REASON_PKT_DROP_SOURCE_RANGE);

	if (fe->backend_count == 0) {
		if (fe_flags & SY_FE_LOCAL_ONLY)
			return drop(skb, p, SY_REASON_PKT_DROP_NO_LOCAL_BACKEND);
		if (!(fe_flags & SY_FE_REJECT_EMPTY))
			return drop(skb, p, SY_REASON_DROP_NO_BACKEND);
		if (p->t.proto == IPPROTO_TCP && (p->tcp_flags & TCP_RST))
			return drop(skb, p, SY_REASON_DROP_NO_BACKEND);
		return NF_REJECT;
	}

	if (fe_flags & SY_FE_AFFINITY)
		affinity_lookup(fe, p, now, &pick);
	if (pick.backend_id == 0) {
		if (fe_flags & SY_FE_MAGLEV) {
			struct sy_config *cfg = sy_get_config();

			err = cfg ? pick_maglev(fe, cfg, sy_flow_hash(cfg, &p->t), &pick)
				  : -SY_REASON_ERR_MAGLEV_MISSING;
		} else {
			err = pick_random(fe, &pick);
		}
		if (err < 0)
			return drop(skb, p, (__u32)-err);
	}
	be = bpf_map_lookup_elem(&sy_backends, &pick.backend_id);
	if (!be || be->family != p->t.family)
		return drop(skb, p, SY_REASON_ERR_BACKEND_MISSING);

	/* A remote backend gets the node's address as source so its replies come back here;
	 * Local policy keeps the client address (the slots hold local backends only). A client
	 * that is its own backend (hairpin) must be SNATed too, or it would answer itself. A pod
	 * keeps its address (pod addresses route in the cluster, and the reply comes back through
	 * this node's pod interface or --devices, where sy_nat translates it). */
	snat = !from_pod && !(fe_flags & SY_FE_LOCAL_ONLY) && !(be->flags & SY_BE_LOCAL);
	if (addr_eq(&be->addr, &p->t.saddr)) {
		snat = 1;
		e.flags |= SY_CT_F_HAIRPIN;
	} else if (snat && dsr_node_of(pcfg, be, p->t.proto)) {
		/* DSR: the client's address kept, the packet encapsulated to the backend's node,
		 * whose decapsulation writes the reply's translation; no reply passes here, so the
		 * entry counts as answered (the unreplied timeout would end it mid-flow). */
		snat = 0;
		e.flags |= SY_CT_F_DSR | SY_CT_F_REPLY_SEEN;
	}
	/* Only a SYN may claim a SNAT port: the middle of a connection (this node lost its entry,
	 * or the packet is forged) could not continue on a new port anyway. Without SNAT the
	 * backend sees the client's own tuple, so a flow moved here from another node goes on. */
	if (snat && p->t.proto == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) != TCP_SYN)
		return drop(skb, p, SY_REASON_PKT_DROP_NOT_SYN);
	if (fe_flags & SY_FE_AFFINITY)
		affinity_store(fe, p, now, &pick);

	e.nat_daddr = be->addr;
	e.nat_dport = be->port;
	e.backend_id = pick.backend_id;
	e.frontend_id = fe->id;
	e.state = (p->t.proto == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
			  ? SY_CT_SYN_SENT
			  : SY_CT_ESTABLISHED;
	e.last_seen_ns = now;
	nat.orig = p->t;

	if (snat) {
		if (!pcfg)
			return drop(skb, p, SY_REASON_PKT_DROP_SNAT_NO_ADDR);
		e.nat_saddr = p->t.family == SY_AF_INET ? pcfg->snat_addr4 : pcfg->snat_addr6;
		if (e.nat_saddr.words[0] == 0 && e.nat_saddr.words[1] == 0 &&
		    e.nat_saddr.words[2] == 0 && e.nat_saddr.words[3] == 0)
			return drop(skb, p, SY_REASON_PKT_DROP_SNAT_NO_ADDR);
		e.flags |= SY_CT_F_SNAT;
		e.nat_sport = 0;
		nat_key_of(&reply, &e, &p->t);
		if (snat_keep(&reply, &nat, old) == 0) {
			e.nat_sport = reply.dport;
			goto write_ct;
		}
		if (snat_claim(skb, &reply, &nat, pcfg, now))
			return drop(skb, p, SY_REASON_PKT_DROP_SNAT_EXHAUSTED);
		e.nat_sport = reply.dport;
	} else {
		e.nat_saddr = p->t.saddr;
		e.nat_sport = p->t.sport;
		nat_key_of(&reply, &e, &p->t);
		/* DSR: the replies are translated on the backend's node, never seen here. */
		if (!(e.flags & SY_CT_F_DSR) &&
		    bpf_map_update_elem(&sy_nat, &reply, &nat, BPF_ANY))
			return drop(skb, p, SY_REASON_PKT_DROP_CT_UPDATE);
	}
	/* A previous flow on the same tuple that kept no port here leaves its reverse entry
	 * behind: remove it (if it still maps to this tuple). */
	if (old) {
		struct sy_ct_key prev = {};

		nat_key_of(&prev, old, &p->t);
		if (!ct_key_eq(&prev, &reply))
			snat_forget(&prev, &p->t);
	}
write_ct:
	if (bpf_map_update_elem(&sy_ct, &p->t, &e, BPF_ANY)) {
		bpf_map_delete_elem(&sy_nat, &reply);
		if (snat)
			snat_claim_end(&reply);
		return drop(skb, p, SY_REASON_PKT_DROP_CT_UPDATE);
	}
	/* sy_nat and sy_ct now both name this flow as the port's owner: other claims may look. */
	if (snat)
		snat_claim_end(&reply);
	sy_count(pick.reason, 0);
	if (!old)
		sy_count(SY_REASON_PKT_CT_CREATED, 0);
	return NF_TRANSLATE;
}

#endif /* SY_LIB_NEW_FLOW_H */
