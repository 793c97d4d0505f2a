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
 *        With DSR (sy_pkt_config SY_PKT_F_DSR) a remote backend's flow is not SNATed: its
 *        packets are DNATed and encapsulated to the backend's node (lib/dsr.h).
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
 * xlat.h, frag.h, new_flow.h (the decision, shared with the XDP program nodeport_xdp.bpf.c,
 * which runs before this one with --xdp and hands it everything it does not forward itself);
 * this file holds the entry points.
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
#include "lib/new_flow.h"
#include "lib/scratch.h"
#include "lib/dsr.h"

char LICENSE[] SEC("license") = "GPL";

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

static __always_inline int apply_frag(struct __sk_buff *skb, const struct pkt *p, struct xlat *x,
				      __u8 ct_flags)
{
	frag_mark(p, x);
	if (ct_flags & SY_CT_F_DSR)
		return dsr_apply(skb, p, x);
	return apply(skb, p, x);
}

/* The new-flow reason of a conntrack entry's flags. */
static __always_inline __u32 new_flow_reason(__u8 ct_flags)
{
	if (ct_flags & SY_CT_F_SNAT)
		return SY_REASON_PKT_DNAT_SNAT;
	return (ct_flags & SY_CT_F_DSR) ? SY_REASON_PKT_DNAT_DSR : SY_REASON_PKT_DNAT;
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
		return apply_frag(skb, p, x, 0);
	}

	cfg = pkt_config();
	e = bpf_map_lookup_elem(&sy_ct, &p->t);
	if (e && ct_usable(e, p, cfg, now)) {
		ct_update(e, p, 0, now);
		sy_count_frontend(e->frontend_id, 0, 1, skb->len);
		ct_xlat(x, e, SY_REASON_PKT_CT_HIT);
		return apply_frag(skb, p, x, e->flags);
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
	pkt_event(p, new_flow_reason(e->flags), e->frontend_id, e->backend_id, skb->len);
	ct_xlat(x, e, new_flow_reason(e->flags));
	return apply_frag(skb, p, x, e->flags);
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
