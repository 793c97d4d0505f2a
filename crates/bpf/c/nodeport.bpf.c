/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-packet load balancing at TC for traffic from outside the node: NodePort (node address),
 * LoadBalancer ingress IPs and ExternalIPs (and cluster IPs routed to the node), and for pod
 * traffic the socket hooks did not translate. See docs/datapath.md "Per-packet path".
 *
 *   sy_nodeport_ingress  (TC ingress of every --devices device)
 *     1. ICMP error about a translated flow -> rewrite outer and quoted headers, forward.
 *     2. reply of a SNATed flow (sy_nat hit)  -> rewrite to frontend -> client, forward.
 *     3. known flow (sy_ct hit, not expired, backend still present) -> same translation.
 *     4. frontend (default scope) -> source ranges -> empty? (drop / RST / ICMP) -> pick
 *        (affinity, Maglev over the 5-tuple, random) -> SNAT port for remote backends ->
 *        write sy_ct + sy_nat -> rewrite -> forward.
 *   sy_pod_ingress       (TC ingress of the host side of --pod-devices interfaces)
 *     the same steps for pods: internal scope of a split frontend, the pod's address kept.
 *   sy_nodeport_egress   (TC egress of both kinds of interface)
 *     replies of local backends (and ICMP errors they send) translated back to the frontend.
 *
 * Forwarding: bpf_fib_lookup on the rewritten addresses, then bpf_redirect (neighbour known)
 * or bpf_redirect_neigh; anything else goes to the stack (TC_ACT_OK). Redirecting ourselves
 * is required for SNATed packets (a packet with a local source arriving on a device is a
 * martian to the stack) and skips a second routing decision for the rest. A packet larger
 * than the chosen route's MTU (IPv6, or IPv4 with DF) is answered with ICMP frag-needed /
 * packet-too-big from the frontend address instead of being redirected and silently dropped.
 *
 * IP fragments: the first fragment's flow decides (its ports are remembered in sy_frags,
 * frag.h); later fragments follow it through the same sy_nat / sy_ct entry, or pass.
 *
 * The steps live in c/lib/: parse.h, conntrack.h, snat.h, nat.h, sctp.h, icmp.h, rst.h, fib.h,
 * xlat.h, frag.h; this file holds the entry points and the new-flow decision.
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/nodeport_maps.h"
#include "lib/counters.h"
#include "lib/events.h"
#include "lib/siphash.h"
#include "lib/lb.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/snat.h"
#include "lib/nat.h"
#include "lib/fib.h"
#include "lib/verdict.h"
#include "lib/icmp.h"
#include "lib/rst.h"
#include "lib/xlat.h"
#include "lib/frag.h"

char LICENSE[] SEC("license") = "GPL";

/* Per-CPU scratch for the parsed packet and its translation: keeps the entry functions'
 * frames small (the combined BPF stack of a call chain is 512 bytes). Slot 0 ingress, 1
 * egress; a program never runs nested on its own CPU within one direction. */
struct scratch {
	struct pkt p;
	struct xlat x;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct scratch);
	__uint(max_entries, 2);
} sy_pkt_scratch SEC(".maps");

static __always_inline struct scratch *scratch(__u32 slot)
{
	struct scratch *s = bpf_map_lookup_elem(&sy_pkt_scratch, &slot);

	if (s)
		__builtin_memset(s, 0, sizeof(*s));
	return s;
}

/* parse() as a global function: the verifier checks it once, not once per path of both
 * programs (its IPv6 extension-header walk would otherwise multiply the states of all that
 * follows). */
__attribute__((noinline)) int sy_parse(struct __sk_buff *skb, struct pkt *p)
{
	if (!skb || !p)
		return P_PASS;
	return parse(skb, p);
}

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
	if (a && now - a->last_used_ns <= (__u64)fe->affinity_timeout_s * NSEC_PER_SEC &&
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

/* handle_new_flow() results besides TC_ACT_*: the caller translates or rejects, so the deep
 * answer builders never stack on top of handle_new_flow (the combined BPF stack is 512 B). */
#define NF_TRANSLATE 100
#define NF_REJECT 101

/* A packet for a frontend without conntrack: choose a backend, claim a SNAT port, write
 * sy_nat and sy_ct. Returns NF_TRANSLATE, NF_REJECT or a TC verdict (pass / counted drop). */
static SY_NOINLINE int handle_new_flow(struct __sk_buff *skb, struct pkt *p,
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
		return TC_ACT_OK;
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
		if (snat_claim(&reply, &nat, pcfg, now))
			return drop(skb, p, SY_REASON_PKT_DROP_SNAT_EXHAUSTED);
		e.nat_sport = reply.dport;
	} else {
		e.nat_saddr = p->t.saddr;
		e.nat_sport = p->t.sport;
		nat_key_of(&reply, &e, &p->t);
		if (bpf_map_update_elem(&sy_nat, &reply, &nat, BPF_ANY))
			return drop(skb, p, SY_REASON_PKT_DROP_CT_UPDATE);
	}
	/* A previous flow on the same tuple that kept no port here leaves its reverse entry
	 * behind: remove it (if it still maps to this tuple). */
	if (old) {
		struct sy_ct_key prev = {};
		struct sy_nat_entry *cur;

		nat_key_of(&prev, old, &p->t);
		cur = bpf_map_lookup_elem(&sy_nat, &prev);
		if (cur && ct_key_eq(&cur->orig, &p->t) && !ct_key_eq(&prev, &reply))
			bpf_map_delete_elem(&sy_nat, &prev);
	}
write_ct:
	if (bpf_map_update_elem(&sy_ct, &p->t, &e, BPF_ANY)) {
		bpf_map_delete_elem(&sy_nat, &reply);
		return drop(skb, p, SY_REASON_PKT_DROP_CT_UPDATE);
	}
	sy_count(pick.reason, 0);
	if (!old)
		sy_count(SY_REASON_PKT_CT_CREATED, 0);
	return NF_TRANSLATE;
}

/* No backends and SY_FE_REJECT_EMPTY: answer like a closed port would. */
static SY_NOINLINE int reject(struct __sk_buff *skb, const struct pkt *p)
{
	if (p->t.proto == IPPROTO_TCP) {
		pkt_event(p, SY_REASON_PKT_REJECT_RST, 0, 0, skb->len);
		if (answer_rst(skb, p))
			return drop(skb, p, SY_REASON_PKT_DROP_NO_ANSWER);
		return send_back(skb, SY_REASON_PKT_REJECT_RST);
	}
	pkt_event(p, SY_REASON_PKT_REJECT_ICMP, 0, 0, skb->len);
	if (answer_icmp(skb, p, p->t.family == SY_AF_INET ? ICMP_DEST_UNREACH_ : ICMP6_DST_UNREACH_,
			p->t.family == SY_AF_INET ? ICMP_PORT_UNREACH_ : ICMP6_PORT_UNREACH_, 0))
		return drop(skb, p, SY_REASON_PKT_DROP_NO_ANSWER);
	return send_back(skb, SY_REASON_PKT_REJECT_ICMP);
}

/* Nothing here translated the packet: it goes to the stack, unless the decapsulation handed
 * it over (its destination is a VIP this node does not own: the stack would route it back
 * towards the directors, a loop until the TTL runs out). */
static __always_inline int untranslated(struct __sk_buff *skb, struct pkt *p)
{
	if (skb->cb[SY_DECAP_CB] == SY_DECAP_CB_MARK)
		return drop(skb, p, SY_REASON_PKT_DROP_DECAP_UNHANDLED);
	return TC_ACT_OK;
}

/* A fragment of a flow being translated: the first remembers its ports for the later ones;
 * a later one is counted as following its first. */
static __always_inline void frag_mark(const struct pkt *p, struct xlat *x)
{
	if (p->frag == FRAG_FIRST)
		frag_remember(p);
	else if (p->frag == FRAG_LATER)
		x->reason = SY_REASON_PKT_FRAG_XLAT;
}

static __always_inline int apply_frag(struct __sk_buff *skb, const struct pkt *p, struct xlat *x)
{
	frag_mark(p, x);
	return apply(skb, p, x);
}

/* The ingress decision of both entry points; from_pod is a constant in each. */
static __always_inline int ingress(struct __sk_buff *skb, int from_pod)
{
	struct scratch *s = scratch(0);
	struct sy_pkt_config *cfg;
	struct sy_nat_entry *n;
	struct sy_ct_entry *e;
	struct pkt *p;
	struct xlat *x;
	__u64 now;
	int rc;

	if (!s)
		return TC_ACT_OK;
	/* Not for this host's MAC: the host it was meant for translates it. ingress_ifindex is 0
	 * only in BPF_PROG_TEST_RUN without a context, where eth_type_trans compares with the
	 * loopback device's all-zero address and every test frame would look like another
	 * host's. */
	if (skb->pkt_type == SY_PACKET_OTHERHOST && skb->ingress_ifindex) {
		sy_count(SY_REASON_PKT_PASS_OTHERHOST, skb->len);
		return TC_ACT_OK;
	}
	p = &s->p;
	x = &s->x;
	rc = sy_parse(skb, p);
	if (rc == P_PASS)
		return untranslated(skb, p);
	if (rc == P_MALFORMED) {
		sy_count(SY_REASON_PKT_PASS_MALFORMED, skb->len);
		return untranslated(skb, p);
	}
	if (rc == P_VLAN) {
		sy_count(SY_REASON_PKT_PASS_VLAN, skb->len);
		return TC_ACT_OK;
	}
	if (rc == P_PASS_EXT) {
		sy_count(SY_REASON_PKT_PASS_IPV6_EXT, skb->len);
		return untranslated(skb, p);
	}
	if (rc == P_FRAGMENT && !frag_follow(p)) {
		sy_count(SY_REASON_PKT_PASS_FRAGMENT, skb->len);
		return untranslated(skb, p);
	}
	if (p->icmp_error) {
		rc = handle_icmp_error(skb, p, 1);
		return rc == TC_ACT_OK ? untranslated(skb, p) : rc;
	}

	now = bpf_ktime_get_ns();
	n = bpf_map_lookup_elem(&sy_nat, &p->t);
	if (n) {
		reply_xlat(x, p, n, 1, now, skb->len);
		return apply_frag(skb, p, x);
	}

	cfg = pkt_config();
	e = bpf_map_lookup_elem(&sy_ct, &p->t);
	if (e && ct_usable(e, p, cfg, now)) {
		ct_update(e, p, 0, now);
		sy_count_frontend(e->frontend_id, 0, 1, skb->len);
		ct_xlat(x, e, SY_REASON_PKT_CT_HIT);
		return apply_frag(skb, p, x);
	}
	/* A later fragment never starts a flow: it has no ports of its own. */
	if (p->frag == FRAG_LATER) {
		sy_count(SY_REASON_PKT_PASS_FRAGMENT, skb->len);
		return untranslated(skb, p);
	}
	rc = handle_new_flow(skb, p, cfg, e, from_pod);
	if (rc == NF_REJECT)
		return reject(skb, p);
	if (rc == TC_ACT_OK)
		return untranslated(skb, p);
	if (rc != NF_TRANSLATE)
		return rc;
	e = bpf_map_lookup_elem(&sy_ct, &p->t);
	if (!e)
		return drop(skb, p, SY_REASON_PKT_DROP_CT_UPDATE);
	sy_count_frontend(e->frontend_id, 1, 1, skb->len);
	pkt_event(p, (e->flags & SY_CT_F_SNAT) ? SY_REASON_PKT_DNAT_SNAT : SY_REASON_PKT_DNAT,
		  e->frontend_id, e->backend_id, skb->len);
	ct_xlat(x, e, (e->flags & SY_CT_F_SNAT) ? SY_REASON_PKT_DNAT_SNAT : SY_REASON_PKT_DNAT);
	return apply_frag(skb, p, x);
}

SEC("classifier")
int sy_nodeport_ingress(struct __sk_buff *skb)
{
	return ingress(skb, 0);
}

/* TC ingress of the host side of pod interfaces (--pod-devices): the same steps for packets
 * the socket hooks did not translate (a process outside --cgroup, a VM's guest). A socket the
 * hooks translated already sends to a backend, which is no frontend: the lookup misses and the
 * packet passes as it is. Replies of local backends are translated here too (sy_nat first). */
SEC("classifier")
int sy_pod_ingress(struct __sk_buff *skb)
{
	return ingress(skb, 1);
}

SEC("classifier")
int sy_nodeport_egress(struct __sk_buff *skb)
{
	struct scratch *s = scratch(1);
	struct sy_nat_entry *n;
	int rc;

	if (!s)
		return TC_ACT_OK;
	rc = sy_parse(skb, &s->p);
	if (rc == P_FRAGMENT) {
		if (!frag_follow(&s->p))
			return TC_ACT_OK;
	} else if (rc != P_OK) {
		return TC_ACT_OK;
	}
	if (s->p.icmp_error)
		return handle_icmp_error(skb, &s->p, 0);
	n = bpf_map_lookup_elem(&sy_nat, &s->p.t);
	if (!n)
		return TC_ACT_OK;
	reply_xlat(&s->x, &s->p, n, 0, bpf_ktime_get_ns(), skb->len);
	frag_mark(&s->p, &s->x);
	return translate_and_forward(skb, &s->p, &s->x);
}
