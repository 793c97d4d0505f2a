/* SPDX-License-Identifier: Apache-2.0 */
/*
 * conntrack.h - the per-packet path's flow table (sy_ct keyed by the client's tuple, sy_nat by
 * the reply tuple): the TCP state machine, and whether an entry may still be used (timeouts
 * in ct_maps.h).
 */
#ifndef SY_LIB_CONNTRACK_H
#define SY_LIB_CONNTRACK_H

#include "parse.h"
#include "nodeport_maps.h"

/* TCP state machine, both directions. */
static __always_inline void ct_update(struct sy_ct_entry *e, const struct pkt *p, int reply,
				      __u64 now)
{
	e->last_seen_ns = now;
	if (reply)
		e->flags |= SY_CT_F_REPLY_SEEN;
	if (p->t.proto == IPPROTO_SCTP_) {
		if (p->sctp_chunk == SCTP_CHUNK_ABORT || p->sctp_chunk == SCTP_CHUNK_SHUTDOWN_COMPLETE)
			e->state = SY_CT_CLOSING;
		else
			e->state = SY_CT_ESTABLISHED; /* a new association on the tuple reopens it */
		return;
	}
	if (p->t.proto != IPPROTO_TCP) {
		e->state = SY_CT_ESTABLISHED;
		return;
	}
	if (p->tcp_flags & TCP_RST)
		e->flags |= SY_CT_F_RESET;
	else
		e->flags &= ~SY_CT_F_RESET;
	if (p->tcp_flags & (TCP_FIN | TCP_RST))
		e->state = SY_CT_CLOSING;
	else if (reply && e->state == SY_CT_SYN_SENT)
		e->state = SY_CT_ESTABLISHED;
	/* DSR on the client's node: no reply passes here; the client's first packet without SYN
	 * acknowledges the backend's answer. */
	else if ((e->flags & SY_CT_F_DSR) && e->state == SY_CT_SYN_SENT && !(p->tcp_flags & TCP_SYN))
		e->state = SY_CT_ESTABLISHED;
}

/* The reply tuple of a translated flow: what the backend sends. */
static __always_inline void nat_key_of(struct sy_ct_key *k, const struct sy_ct_entry *e,
				       const struct sy_ct_key *orig)
{
	k->saddr = e->nat_daddr;
	k->daddr = e->nat_saddr;
	k->sport = e->nat_dport;
	k->dport = e->nat_sport;
	k->proto = orig->proto;
	k->family = orig->family;
	k->pad[0] = 0;
	k->pad[1] = 0;
}

static __always_inline int ct_key_eq(const struct sy_ct_key *a, const struct sy_ct_key *b)
{
	return addr_eq(&a->saddr, &b->saddr) && addr_eq(&a->daddr, &b->daddr) &&
	       a->sport == b->sport && a->dport == b->dport && a->proto == b->proto &&
	       a->family == b->family;
}

/* Does the SNAT port of a SNATed flow still map back to it (sy_nat under its reply tuple names
 * the flow)? Not when sy_nat lost the entry (an LRU map evicts when full) and the port went to
 * another flow since: the flow's replies would reach that one. A function of its own: asked
 * only of a SYN on a SNATed flow, and its key would otherwise sit on the frame of the longest
 * call chain (the new flow's SNAT claim), over the verifier's 512 bytes at XDP. */
static SY_NOINLINE int ct_snat_maps_back(const struct sy_ct_entry *e,
					     const struct sy_ct_key *orig)
{
	struct sy_ct_key reply = {};
	struct sy_nat_entry *n;

	nat_key_of(&reply, e, orig);
	n = bpf_map_lookup_elem(&sy_nat, &reply);
	return n && ct_key_eq(&n->orig, orig);
}

/* Is the conntrack entry usable for this packet? Expired entries, a new SYN on a closing
 * flow, a SYN on a SNATed flow whose port no longer maps back to it (a new flow claims a port
 * of its own; only a SYN can: the middle of a connection could not move to a new port anyway)
 * and entries whose backend is gone (removed, or its id reused elsewhere) start over. */
static __always_inline int ct_usable(const struct sy_ct_entry *e, const struct pkt *p,
				     const struct sy_pkt_config *cfg, __u64 now)
{
	struct sy_backend *be;

	if (ct_expired(e, p->t.proto, cfg, now))
		return 0;
	if (p->t.proto == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN &&
	    (e->state == SY_CT_CLOSING ||
	     ((e->flags & SY_CT_F_SNAT) && !ct_snat_maps_back(e, &p->t))))
		return 0;
	be = bpf_map_lookup_elem(&sy_backends, &e->backend_id);
	return be && addr_eq(&be->addr, &e->nat_daddr) && be->port == e->nat_dport;
}

#endif /* SY_LIB_CONNTRACK_H */
