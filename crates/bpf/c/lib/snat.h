/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snat.h - claiming a source port on the node's SNAT address for a new flow to a remote
 * backend, so its replies come back to this node and find their flow in sy_nat.
 */
#ifndef SY_LIB_SNAT_H
#define SY_LIB_SNAT_H

#include "conntrack.h"
#include "sock_lookup.h"

/* Who owns the SNAT port of the sy_nat entry at key: NAT_FREE (no flow, or its flow has
 * expired and is not a closed TCP flow in its hold), NAT_HELD (a closed TCP flow within
 * SY_SNAT_TCP_HOLD_S of its last packet, or a TCP flow an RST ended and quiet since for
 * SY_SNAT_RESET_QUIET_MS, before its closing timeout too: neither end keeps that connection;
 * *idle_ns set to how long ago the last packet was) or
 * NAT_LIVE. Without the reset case a node at thousands of new connections per second to one
 * backend ran out of ports within the 10 s closing timeout of flows that had ended. */
#define NAT_FREE 0
#define NAT_HELD 1
#define NAT_LIVE 2
static __always_inline int nat_entry_owner(const struct sy_ct_key *key,
					   const struct sy_nat_entry *n,
					   const struct sy_pkt_config *cfg, __u64 now,
					   __u64 *idle_ns)
{
	struct sy_ct_entry *e = bpf_map_lookup_elem(&sy_ct, &n->orig);
	__u64 idle;

	if (!e || e->nat_sport != key->dport || !addr_eq(&e->nat_saddr, &key->daddr) ||
	    e->nat_dport != key->sport || !addr_eq(&e->nat_daddr, &key->saddr))
		return NAT_FREE;
	idle = sy_age_ns(now, e->last_seen_ns);
	if (!ct_expired(e, key->proto, cfg, now)) {
		if (key->proto == IPPROTO_TCP && e->state == SY_CT_CLOSING &&
		    (e->flags & SY_CT_F_RESET) &&
		    idle >= (__u64)SY_SNAT_RESET_QUIET_MS * 1000 * 1000) {
			*idle_ns = idle;
			return NAT_HELD;
		}
		return NAT_LIVE;
	}
	if (key->proto == IPPROTO_TCP && e->state == SY_CT_CLOSING &&
	    idle <= (__u64)SY_SNAT_TCP_HOLD_S * NSEC_PER_SEC) {
		*idle_ns = idle;
		return NAT_HELD;
	}
	return NAT_FREE;
}

/* Does a socket of this node hold the reply tuple (backend -> node:port)? Such a port is never
 * claimed: the backend's replies to the socket would be taken for the SNATed flow's, and a node
 * service bound to a port of the range (a UDP daemon on 4789, the agent's health port) would be
 * shadowed. TCP: bpf_skc_lookup_tcp finds a connection on the tuple (established, or request
 * and TIME_WAIT sockets, which bpf_sk_lookup_tcp hides) or a listener on the port; UDP: a
 * socket bound to the port (or connected on the tuple). SCTP and ICMP have no lookup helper.
 * A global function: the verifier checks it once, not on every path of the claim's probe loop
 * (inlined there, loading took minutes), and its tuple is not on the claim's frame (the
 * call chain's combined stack is 512 bytes). One call per candidate port of a new flow. */
__attribute__((noinline)) int sy_snat_port_has_socket(struct __ctx_buff *ctx,
						      const struct sy_ct_key *reply)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;
	__u32 len;

	if (!ctx || !reply || (reply->proto != IPPROTO_TCP && reply->proto != IPPROTO_UDP))
		return 0;
	len = sock_tuple_of(reply, &tuple);
	if (reply->proto == IPPROTO_TCP)
		sk = bpf_skc_lookup_tcp(ctx, &tuple, len, BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_udp(ctx, &tuple, len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/* Claim a source port on the SNAT address for the reply key (backend -> node:port). Probes
 * SY_SNAT_PROBES ports chosen at random (independent probes: with a fraction f of the range
 * in use, all probes fail with probability f^32, where linear probing would fail far earlier
 * on clusters of used ports). A port is free when no flow owns it and no local socket holds
 * it (sy_snat_port_has_socket); a closed TCP flow's port within its SY_SNAT_TCP_HOLD_S hold is
 * taken only when no probed port is free, the one idle longest among those probed. */
static SY_NOINLINE int snat_claim(struct __ctx_buff *ctx, struct sy_ct_key *reply,
				      const struct sy_nat_entry *val,
				      const struct sy_pkt_config *cfg, __u64 now)
{
	__u32 min = cfg->snat_port_min, max = cfg->snat_port_max;
	__u64 held_idle = 0;
	__be16 held = 0;
	__u32 span, i;

	if (min == 0 || max < min)
		return -1;
	span = max - min + 1;
	for (i = 0; i < SY_SNAT_PROBES; i++) {
		struct sy_nat_entry *cur;
		__u64 idle = 0;
		int owner;

		reply->dport = bpf_htons((__u16)(min + bpf_get_prandom_u32() % span));
		cur = bpf_map_lookup_elem(&sy_nat, reply);
		if (!cur) {
			if (!sy_snat_port_has_socket(ctx, reply) &&
			    bpf_map_update_elem(&sy_nat, reply, val, BPF_NOEXIST) == 0)
				return 0;
			continue;
		}
		owner = nat_entry_owner(reply, cur, cfg, now, &idle);
		/* A socket may have taken the port since its flow claimed it. */
		if (owner == NAT_LIVE || sy_snat_port_has_socket(ctx, reply))
			continue;
		if (owner == NAT_FREE && bpf_map_update_elem(&sy_nat, reply, val, BPF_EXIST) == 0)
			return 0;
		if (owner == NAT_HELD && (held == 0 || idle > held_idle)) {
			held = reply->dport;
			held_idle = idle;
		}
	}
	if (held == 0)
		return -1;
	reply->dport = held;
	return bpf_map_update_elem(&sy_nat, reply, val, BPF_EXIST) ? -1 : 0;
}

/* A client reusing its tuple (a new SYN on a closed flow) to the same backend keeps the SNAT
 * port of the previous flow when that port is still its own: the backend then sees the same
 * tuple as before, on which its TIME_WAIT accepts the SYN (the client's sequence number and
 * timestamp grow on one tuple), as with nf_conntrack, where the tuple stays mapped. Returns 0
 * with reply->dport set, or -1 (claim another port). */
static __always_inline int snat_keep(struct sy_ct_key *reply, const struct sy_nat_entry *val,
				     const struct sy_ct_entry *old)
{
	struct sy_nat_entry *cur;

	if (!old || !(old->flags & SY_CT_F_SNAT) || !addr_eq(&old->nat_saddr, &reply->daddr) ||
	    !addr_eq(&old->nat_daddr, &reply->saddr) || old->nat_dport != reply->sport)
		return -1;
	reply->dport = old->nat_sport;
	cur = bpf_map_lookup_elem(&sy_nat, reply);
	if (!cur)
		return bpf_map_update_elem(&sy_nat, reply, val, BPF_NOEXIST) ? -1 : 0;
	return ct_key_eq(&cur->orig, &val->orig) ? 0 : -1;
}

#endif /* SY_LIB_SNAT_H */
