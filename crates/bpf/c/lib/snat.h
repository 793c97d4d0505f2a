/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snat.h - claiming a source port on the node's SNAT address for a new flow to a remote
 * backend, so its replies come back to this node and find their flow in sy_nat.
 */
#ifndef SY_LIB_SNAT_H
#define SY_LIB_SNAT_H

#include "conntrack.h"
#include "sock_lookup.h"

/* Reply tuple (backend -> node:port) -> claim word: even while nobody is changing who owns the
 * port, odd from a claim's compare-and-swap until the claiming flow's sy_ct entry is written
 * (snat_claim_end). Whoever writes or removes the sy_nat entry of a SNAT port holds it, so two
 * CPUs never give one port to two flows: without it both could find a held port takeable and
 * both overwrite sy_nat (BPF_EXIST succeeds twice), or find a port just claimed by another
 * CPU free because its new owner's sy_ct entry was not written yet. The second flow's SYN then
 * met the first one's connection on the backend (challenge ACK), whose answer, translated to
 * the second client, came back as an RST that ended the first connection: 2-6 failed
 * connections per 8 s at 10,000 new connections per second (issue 20). Shared by the TC and
 * XDP objects (pinned by name); not a conntrack map, so not sized by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sy_ct_key);
	__type(value, __u64);
	__uint(max_entries, SY_SNAT_CLAIMS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_snat_claims SEC(".maps");

/* The claim word of a reply tuple, created at 0 when missing; NULL if the map refuses. */
static __always_inline __u64 *snat_claim_word(const struct sy_ct_key *reply)
{
	__u64 zero = 0, *w = bpf_map_lookup_elem(&sy_snat_claims, reply);

	if (w)
		return w;
	bpf_map_update_elem(&sy_snat_claims, reply, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sy_snat_claims, reply);
}

/* Take the claim of a reply tuple: 1 when this CPU now holds it (the word went from an even
 * value to odd), 0 when another claim holds it. The caller then looks at the port again:
 * whatever it saw before may have changed until now. */
static __always_inline int snat_claim_begin(const struct sy_ct_key *reply)
{
	__u64 *w = snat_claim_word(reply);
	__u64 seen;

	if (!w)
		return 0;
	seen = *(volatile __u64 *)w;
	return !(seen & 1) && __sync_val_compare_and_swap(w, seen, seen + 1) == seen;
}

/* Release the claim taken by snat_claim_begin, once sy_nat and the flow's sy_ct entry say who
 * owns the port (or the claim was given up). */
static __always_inline void snat_claim_end(const struct sy_ct_key *reply)
{
	__u64 *w = bpf_map_lookup_elem(&sy_snat_claims, reply);
	__u64 seen;

	if (!w)
		return;
	seen = *(volatile __u64 *)w;
	if (seen & 1)
		__sync_val_compare_and_swap(w, seen, seen + 1);
}

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

/* Who owns the port of reply (set in reply->dport): NAT_FREE (no entry, or its flow is gone),
 * NAT_HELD (*idle_ns set) or NAT_LIVE. */
static __always_inline int snat_port_owner(const struct sy_ct_key *reply,
					   const struct sy_pkt_config *cfg, __u64 now,
					   __u64 *idle_ns)
{
	struct sy_nat_entry *cur = bpf_map_lookup_elem(&sy_nat, reply);

	return cur ? nat_entry_owner(reply, cur, cfg, now, idle_ns) : NAT_FREE;
}

/* Give the port of reply to the flow val under its claim (snat_claim_begin taken): looks at
 * the port again, since another CPU may have taken it between the probe and the claim, and
 * skips a port a local socket holds (sy_snat_port_has_socket; a socket may also have taken the
 * port since its flow claimed it). 0 with sy_nat written and the claim still held (released
 * once the flow's sy_ct entry is written), else -1 with the claim released. */
static SY_NOINLINE int snat_take(struct __ctx_buff *ctx, struct sy_ct_key *reply,
				     const struct sy_nat_entry *val,
				     const struct sy_pkt_config *cfg, __u64 now)
{
	__u64 idle = 0;

	if (snat_port_owner(reply, cfg, now, &idle) != NAT_LIVE &&
	    !sy_snat_port_has_socket(ctx, reply) &&
	    bpf_map_update_elem(&sy_nat, reply, val, BPF_ANY) == 0)
		return 0;
	snat_claim_end(reply);
	return -1;
}

/* Claim a source port on the SNAT address for the reply key (backend -> node:port). Probes
 * SY_SNAT_PROBES ports chosen at random (independent probes: with a fraction f of the range
 * in use, all probes fail with probability f^32, where linear probing would fail far earlier
 * on clusters of used ports). A port is free when no flow owns it and no local socket holds
 * it (sy_snat_port_has_socket); a closed TCP flow's port within its SY_SNAT_TCP_HOLD_S hold is
 * taken only when no probed port is free, the one idle longest among those probed. The port
 * is taken under its claim (sy_snat_claims), which the caller releases with snat_claim_end
 * once sy_ct is written; when another CPU takes the port meanwhile, the flow is dropped as if
 * no port were free (its SYN comes again). The probe loop only looks: claims inside it, or a
 * second candidate, multiplied the verifier's work (loading did not finish in 10 minutes). */
static SY_NOINLINE int snat_claim(struct __ctx_buff *ctx, struct sy_ct_key *reply,
				      const struct sy_nat_entry *val,
				      const struct sy_pkt_config *cfg, __u64 now)
{
	__u32 min = cfg->snat_port_min, max = cfg->snat_port_max;
	__u64 held_idle = 0;
	__be16 port = 0;
	__u32 span, i;

	if (min == 0 || max < min)
		return -1;
	span = max - min + 1;
	for (i = 0; i < SY_SNAT_PROBES; i++) {
		__u64 idle = 0;
		int owner;

		reply->dport = bpf_htons((__u16)(min + bpf_get_prandom_u32() % span));
		owner = snat_port_owner(reply, cfg, now, &idle);
		if (owner == NAT_LIVE || sy_snat_port_has_socket(ctx, reply))
			continue;
		if (owner == NAT_FREE) {
			port = reply->dport;
			break;
		}
		if (port == 0 || idle > held_idle) {
			port = reply->dport;
			held_idle = idle;
		}
	}
	if (port == 0)
		return -1;
	reply->dport = port;
	if (!snat_claim_begin(reply))
		return -1;
	return snat_take(ctx, reply, val, cfg, now);
}

/* A client reusing its tuple (a new SYN on a closed flow) to the same backend keeps the SNAT
 * port of the previous flow when that port is still its own: the backend then sees the same
 * tuple as before, on which its TIME_WAIT accepts the SYN (the client's sequence number and
 * timestamp grow on one tuple), as with nf_conntrack, where the tuple stays mapped. Under the
 * port's claim, like snat_claim (a concurrent claim could otherwise take the port of the
 * closed flow at the same moment). Returns 0 with reply->dport set and the claim held, or -1
 * (claim another port). */
static __always_inline int snat_keep(struct sy_ct_key *reply, const struct sy_nat_entry *val,
				     const struct sy_ct_entry *old)
{
	struct sy_nat_entry *cur;

	if (!old || !(old->flags & SY_CT_F_SNAT) || !addr_eq(&old->nat_saddr, &reply->daddr) ||
	    !addr_eq(&old->nat_daddr, &reply->saddr) || old->nat_dport != reply->sport)
		return -1;
	reply->dport = old->nat_sport;
	if (!snat_claim_begin(reply))
		return -1;
	cur = bpf_map_lookup_elem(&sy_nat, reply);
	if (cur ? ct_key_eq(&cur->orig, &val->orig)
		: bpf_map_update_elem(&sy_nat, reply, val, BPF_NOEXIST) == 0)
		return 0;
	snat_claim_end(reply);
	return -1;
}

/* A new flow on a client tuple whose previous flow kept a SNAT port here that the new flow
 * does not use: remove the previous flow's reverse entry (under its claim, and only while it
 * still names this tuple), so late replies of the old connection do not reach the new one. */
static __always_inline void snat_forget(struct sy_ct_key *prev, const struct sy_ct_key *orig)
{
	struct sy_nat_entry *cur;

	if (!snat_claim_begin(prev))
		return;
	cur = bpf_map_lookup_elem(&sy_nat, prev);
	if (cur && ct_key_eq(&cur->orig, orig))
		bpf_map_delete_elem(&sy_nat, prev);
	snat_claim_end(prev);
}

#endif /* SY_LIB_SNAT_H */
