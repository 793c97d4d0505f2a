/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-packet load balancing at XDP (--xdp native|generic) for traffic from outside the node:
 * the TC program's path (nodeport.bpf.c) for the packets XDP can finish on its own, before
 * the kernel builds an skb. Same maps (pinned by name: sy_ct, sy_nat, frontends, backends...),
 * same libs (c/lib/ctx.h gives them the XDP context), so a flow is one conntrack entry
 * whichever program sees its packets. See docs/datapath.md "XDP on nodes".
 *
 *   sy_nodeport_xdp  (XDP on every --devices device)
 *     1. not for this device's MAC, not TCP/UDP, a fragment, an ICMP error, VLAN, malformed:
 *        XDP_PASS untouched (TC does what it always did, and counts it).
 *     2. reply of a translated flow (sy_nat hit) -> frontend -> client;
 *        known flow (sy_ct hit, usable) -> its translation;
 *        new flow -> handle_new_flow() (lib/new_flow.h, the TC program's decision);
 *     3. forward at XDP only when the route is complete (bpf_fib_lookup success: neighbour
 *        known, within the MTU) and leaves by a device with this program (sy_xdp_devs), as
 *        this CPU's next-hop cache says (lib/route_cache.h: a lookup is reused for up to
 *        SY_NP_ROUTE_TTL_MS): rewrite (lib/xdp_nat.h), MACs, XDP_TX (same device) or
 *        bpf_redirect. Otherwise XDP_PASS untouched: TC finds the conntrack entry and
 *        translates (redirect_neigh, frag-needed...).
 *
 * A packet is rewritten only right before XDP_TX / XDP_REDIRECT, which TC ingress never sees,
 * and passed untouched otherwise, so nothing is translated twice. DSR flows (lib/dsr.h) are
 * decided here but always passed to TC, which encapsulates them. Empty frontends with reject
 * (RST / ICMP answers) pass to TC, which answers.
 */
#define SY_CTX_XDP 1
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/nodeport_maps.h"
#include "lib/counters.h"
#include "lib/events.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/nat.h"
#include "lib/fib.h"
#include "lib/verdict.h"
#include "lib/xlat.h"
#include "lib/new_flow.h"
#include "lib/scratch.h"
#include "lib/route_cache.h"
#include "lib/xdp_nat.h"

char LICENSE[] SEC("license") = "GPL";

/* The devices this program runs on (the agent writes them at attach; only this object uses
 * the map). A translated frame is redirected only to one of them: a device without an XDP
 * program may refuse frames from XDP (veth: its peer needs NAPI; many drivers: XDP TX rings). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct sy_xdp_dev);
	__uint(max_entries, SY_XDP_DEVS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_xdp_devs SEC(".maps");

/* Does the transport checksum hold only the pseudo-header sum (CHECKSUM_PARTIAL: a frame a
 * local socket sent through a veth, to be completed on transmission)? XDP cannot see the
 * skb's checksum state, and sending such a frame on from XDP would deliver a wrong checksum;
 * TC's bpf_l4_csum_replace knows the state. Told by value: the field equals the folded
 * pseudo-header sum, which a complete checksum does by chance once in 65,536 frames (those
 * take the TC path, still correct). */
static __always_inline int l4_csum_partial(struct xdp_md *ctx, const struct pkt *p)
{
	__u16 c;

	if (p->t.proto != IPPROTO_TCP && p->t.proto != IPPROTO_UDP)
		return 0;
	if (ctx_load_bytes(ctx, l4_csum_off(p), &c, 2))
		return 1;
	return c == pseudo_hdr_sum(p);
}

/* The next hop of a packet from s to d (this CPU's cache entry, looked up on a miss): NULL
 * when the route is not complete (no route, neighbour unknown, too big for the MTU...). */
static SY_NOINLINE struct sy_np_route *xdp_route(struct xdp_md *ctx, const struct pkt *p,
						 const struct sy_addr *s, const struct sy_addr *d,
						 __u64 now)
{
	__u32 in = ctx->ingress_ifindex;
	struct sy_np_route *c = np_route_slot(s, d);
	struct route r = {};

	if (!c)
		return 0;
	if (np_route_hit(c, s, d, p->t.proto, in, p->ip_len, now))
		return c;
	route_lookup(ctx, p, s, d, &r);
	if (r.rc != BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	np_route_keep(c, &r, s, d, p->t.proto, in, p->ip_len,
		      r.ifindex == in || bpf_map_lookup_elem(&sy_xdp_devs, &r.ifindex), now);
	return c;
}

/* What forwarding a packet commits besides the rewrite. */
#define XF_REPLY 0 /* a reply: n's flow saw a reply */
#define XF_CT 1    /* a known flow's packet: e's state */
#define XF_NEW 2   /* a new flow's first packet: its decision is counted (PKT_DNAT...) where
		    * it is made, so a flow handed to TC counts it once (TC: PKT_CT_HIT) */

/* Forward s->x at XDP when the route allows, else hand the untouched packet to TC. entry: the
 * sy_nat entry (XF_REPLY) or the sy_ct entry. */
static SY_NOINLINE int xdp_forward(struct xdp_md *ctx, struct scratch *s, int kind, void *entry,
				   __u64 now)
{
	__u32 len = ctx_len(ctx), in = ctx->ingress_ifindex, out;
	struct pkt *p = &s->p;
	struct xlat *x = &s->x;
	struct sy_np_route *r;

	if (l4_csum_partial(ctx, p))
		goto to_tc;
	r = xdp_route(ctx, p, &x->s, &x->d, now);
	if (!r || !r->xdp_out)
		goto to_tc;

	if (kind == XF_REPLY) {
		reply_seen(p, entry, now, len);
	} else {
		struct sy_ct_entry *e = entry;

		if (kind == XF_CT)
			ct_update(e, p, 0, now);
		sy_count_frontend(e->frontend_id, 0, 1, len);
	}
	out = r->ifindex;
	if (xdp_nat_rewrite(ctx, p, &x->s, x->sp, &x->d, x->dp, r->dmac, r->smac))
		return drop(ctx, p, SY_REASON_PKT_DROP_REWRITE);
	if (kind != XF_NEW)
		sy_count(x->reason, len);
	sy_count(SY_REASON_PKT_XDP_FORWARDED, len);
	if (out == in)
		return XDP_TX;
	return bpf_redirect(out, 0);
to_tc:
	sy_count(SY_REASON_PKT_XDP_TO_TC, len);
	return XDP_PASS;
}

/* Is the frame addressed to the device's own MAC (the agent wrote it)? */
static __always_inline int for_this_device(struct xdp_md *ctx)
{
	__u32 in = ctx->ingress_ifindex;
	struct sy_xdp_dev *dev = bpf_map_lookup_elem(&sy_xdp_devs, &in);
	__u8 dst[ETH_ALEN];

	if (!dev || ctx_load_bytes(ctx, 0, dst, ETH_ALEN))
		return 0;
	return __builtin_memcmp(dst, dev->mac, ETH_ALEN) == 0;
}

SEC("xdp")
int sy_nodeport_xdp(struct xdp_md *ctx)
{
	struct scratch *s = scratch(0);
	struct sy_pkt_config *cfg;
	struct sy_nat_entry *n;
	struct sy_ct_entry *e;
	struct pkt *p;
	struct xlat *x;
	__u64 now;
	int rc;

	if (!s || !for_this_device(ctx))
		return XDP_PASS;
	p = &s->p;
	x = &s->x;
	/* Fragments (the first remembers its ports for the later ones in TC's sy_frags), ICMP
	 * errors, SCTP (CRC32c) and all the rest that is not plain TCP or UDP go to TC. */
	if (sy_parse(ctx, p) != P_OK || p->frag != FRAG_NONE || p->icmp_error ||
	    (p->t.proto != IPPROTO_TCP && p->t.proto != IPPROTO_UDP))
		return XDP_PASS;

	now = bpf_ktime_get_ns();
	n = bpf_map_lookup_elem(&sy_nat, &p->t);
	if (n) {
		reply_target(x, n, 1);
		return xdp_forward(ctx, s, XF_REPLY, n, now);
	}
	cfg = pkt_config();
	e = bpf_map_lookup_elem(&sy_ct, &p->t);
	if (e && ct_usable(e, p, cfg, now)) {
		if (e->flags & SY_CT_F_DSR)
			goto dsr_to_tc;
		ct_xlat(x, e, SY_REASON_PKT_CT_HIT);
		return xdp_forward(ctx, s, XF_CT, e, now);
	}
	/* A frame TC would have to finish anyway decides its new flow there. */
	if (l4_csum_partial(ctx, p))
		return XDP_PASS;
	rc = handle_new_flow(ctx, p, cfg, e, 0);
	if (rc != NF_TRANSLATE) /* no frontend, reject (TC answers), or a counted drop */
		return rc == NF_REJECT ? XDP_PASS : rc;
	e = bpf_map_lookup_elem(&sy_ct, &p->t);
	if (!e)
		return drop(ctx, p, SY_REASON_PKT_DROP_CT_UPDATE);
	sy_count_frontend(e->frontend_id, 1, 0, 0);
	if (e->flags & SY_CT_F_DSR) {
		/* TC encapsulates (lib/dsr.h) from the entry just written (a CT hit there). */
		sy_count(SY_REASON_PKT_DNAT_DSR, ctx_len(ctx));
		pkt_event(p, SY_REASON_PKT_DNAT_DSR, e->frontend_id, e->backend_id, ctx_len(ctx));
		goto dsr_to_tc;
	}
	sy_count((e->flags & SY_CT_F_SNAT) ? SY_REASON_PKT_DNAT_SNAT : SY_REASON_PKT_DNAT,
		 ctx_len(ctx));
	pkt_event(p, (e->flags & SY_CT_F_SNAT) ? SY_REASON_PKT_DNAT_SNAT : SY_REASON_PKT_DNAT,
		  e->frontend_id, e->backend_id, ctx_len(ctx));
	ct_xlat(x, e, (e->flags & SY_CT_F_SNAT) ? SY_REASON_PKT_DNAT_SNAT : SY_REASON_PKT_DNAT);
	return xdp_forward(ctx, s, XF_NEW, e, now);
dsr_to_tc:
	/* DSR flows are encapsulated at TC (bpf_skb_adjust_room, GSO): passed untouched. */
	sy_count(SY_REASON_PKT_XDP_TO_TC, ctx_len(ctx));
	return XDP_PASS;
}
