/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The director (XDP on its uplink): packets for a VIP go to the node Maglev picks for their
 * 5-tuple, encapsulated; everything else goes to the stack. See docs/director.md.
 *
 *   sy_director
 *     1. parse: the flow (an ICMP error: the quoted flow turned around, so it follows its flow)
 *     2. VIP (address, port, protocol) -> its table (its home slot in an array, a hash
 *        lookup only when the slot holds another and says so); no VIP: XDP_PASS
 *     3. the flow hash of the 5-tuple (the node programs' hash; from the VIP's precomputed
 *        state, so only the source's words per packet) mod M -> slot -> node
 *     4. route to the node (next hop and outer header template cached per CPU for 100 ms):
 *        too big once encapsulated -> ICMP frag-needed / packet-too-big with the inner MTU
 *        back to the client (XDP_TX)
 *     5. push Ethernet + outer IP (the template, lengths and checksum patched) + UDP + GUE
 *        (or FOU, or IPIP) -> XDP_TX / redirect; a TCP or
 *        UDP packet whose slot changed node at the latest table change carries the previous node
 *        in GUE private data (the second chance: the node re-sends what it does not hold)
 *
 * No state is kept: every director with the same tables sends a flow to the same node.
 *
 *   sy_dir_probe (TC egress on the uplink): the director's own health probes (skb mark
 *     SY_DIR_PROBE_MARK) get the same outer headers as VIP traffic to the node they are
 *     addressed to, so a node whose decapsulation does not work fails its probes.
 */
#include "lib/common.h"
#include "lib/addr.h"
#include "lib/parse.h"
#include "lib/csum.h"
#include "lib/siphash.h"
#include "lib/director_maps.h"
#include "lib/events.h"
#include "lib/xdp_parse.h"
#include "lib/encap.h"
#include "lib/xdp_icmp.h"
#include <linux/pkt_cls.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET_FIB 2
#define AF_INET6_FIB 10

/* A packet and what was decided for it. */
struct dir_flow {
	struct xdp_pkt p;
	__u64 hash;
	__u64 slot; /* the Maglev slot; SY_EVENT_NO_SLOT until known */
	__u32 vip_id;
	__u32 node_id;
	__u32 mtu; /* out: the inner MTU when dir_send() returns DIR_TOO_BIG */
	const struct sy_dir_node *prev; /* the slot's previous node (second chance), or NULL */
};

/* The monitor's record of a decision (sampled) or drop: VIP, flow, node, slot, reason. One
 * array lookup while no monitor runs. */
static __always_inline void dir_event(const struct dir_flow *d, __u32 reason, int is_drop)
{
	struct sy_event *ev = sy_event_start(is_drop, reason, SY_PATH_DIR, d->vip_id, d->node_id);

	if (!ev)
		return;
	ev->cookie = d->slot;
	ev->len = d->p.ip_len;
	ev->saddr = d->p.flow.saddr;
	ev->daddr = d->p.flow.daddr;
	ev->sport = d->p.flow.sport;
	ev->dport = d->p.flow.dport;
	ev->proto = d->p.flow.proto;
	ev->family = d->p.flow.family;
	bpf_ringbuf_submit(ev, 0);
}

/* Counts (and reports) a decision about d. */
static __always_inline void dir_decided(const struct dir_flow *d, __u32 reason)
{
	sy_dir_count(reason, d->p.ip_len);
	dir_event(d, reason, 0);
}

static __always_inline int dir_drop(const struct dir_flow *d, __u32 reason)
{
	sy_dir_count(reason, d->p.ip_len);
	dir_event(d, reason, 1);
	return XDP_DROP;
}

/* What dir_route_refresh() is asked, and answers. */
struct dir_route_query {
	__u32 tot_len; /* in: the outer packet's length */
	__u32 mtu;     /* out: the route MTU, on BPF_FIB_LKUP_RET_FRAG_NEEDED */
	__u8 proto;    /* in: the outer IP protocol */
	__u8 v4;       /* in: the outer family is IPv4 */
	__u8 pad[2];
};

/* dir_route_refresh(): no director address of the node's family is configured. */
#define DIR_ROUTE_NO_SOURCE 100

static __always_inline int dir_addr_eq(const struct sy_addr *a, const struct sy_addr *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
}

/* Whether r holds this CPU's next hop to dst from src through the device the packet came in
 * on, good for a packet of tot_len bytes (fresh or not: dir_route_fresh). */
static __always_inline int dir_route_for(const struct xdp_md *ctx, const struct sy_dir_route *r,
					 const struct sy_addr *src, const struct sy_addr *dst,
					 __u32 tot_len)
{
	return r->in_ifindex == ctx->ingress_ifindex && dir_addr_eq(&r->dst, dst) &&
	       dir_addr_eq(&r->src, src) && tot_len <= r->ok_len;
}

/* Whether r's deadline is still ahead. The coarse clock is a helper call; it moves with the
 * timer tick, and jiffies64 is one load (the verifier inlines bpf_jiffies64): so the clock is
 * read once per tick for r, and r is fresh for the rest of a tick in which its deadline was
 * ahead. An entry lives at most one tick (1-10 ms) longer. */
static __always_inline int dir_route_fresh(struct sy_dir_route *r)
{
	__u64 tick = bpf_jiffies64();

	if (tick == r->fresh_jiffies)
		return 1;
	if (bpf_ktime_get_coarse_ns() >= r->expires_ns)
		return 0;
	r->fresh_jiffies = tick;
	return 1;
}

/* The slow path of the next hop (a miss in this CPU's cache entry r): asks bpf_fib_lookup
 * for the route from src to dst (as output of the device the packet came in on) and rebuilds
 * r, its outer header template included. Returns a BPF_FIB_LKUP_RET_* code (r is valid only
 * on success; q->mtu is the route MTU on BPF_FIB_LKUP_RET_FRAG_NEEDED), or
 * DIR_ROUTE_NO_SOURCE. A call of its own: the fast path stays small. */
static SY_NOINLINE int dir_route_refresh(struct xdp_md *ctx, struct sy_dir_route *r,
					 const struct sy_addr *src, const struct sy_addr *dst,
					 struct dir_route_query *q)
{
	struct bpf_fib_lookup f = {};
	__u64 now = bpf_ktime_get_coarse_ns();
	__u32 ok_len = q->tot_len;
	int rc;

	if (!(src->words[0] | src->words[1] | src->words[2] | src->words[3]))
		return DIR_ROUTE_NO_SOURCE;
	/* Only the length was too much: keep the longest length accepted so far. */
	if (now < r->expires_ns && dir_route_for(ctx, r, src, dst, 0) && r->ok_len > ok_len)
		ok_len = r->ok_len;
	r->expires_ns = 0; /* until the lookup below succeeds */
	r->fresh_jiffies = 0;
	f.ifindex = ctx->ingress_ifindex;
	f.l4_protocol = q->proto;
	f.tot_len = q->tot_len;
	if (q->v4) {
		f.family = AF_INET_FIB;
		f.ipv4_src = src->words[3];
		f.ipv4_dst = dst->words[3];
	} else {
		f.family = AF_INET6_FIB;
		__builtin_memcpy(f.ipv6_src, src->words, 16);
		__builtin_memcpy(f.ipv6_dst, dst->words, 16);
	}
	/* As output: the outer packet is the director's own (no forwarding sysctl needed). */
	rc = bpf_fib_lookup(ctx, &f, sizeof(f), BPF_FIB_LOOKUP_OUTPUT);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		q->mtu = f.mtu_result;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return rc;
	r->csum = encap_template(r->hdr, q->v4, src, dst, f.dmac, f.smac);
	r->ifindex = f.ifindex;
	r->ok_len = ok_len;
	r->dst = *dst;
	r->src = *src;
	r->in_ifindex = ctx->ingress_ifindex;
	r->expires_ns = now + SY_DIR_ROUTE_TTL_NS;
	return rc;
}

/* The second chance: the node the VIP's previous table had in `slot`, if it differs from
 * `node` and has its family (the node re-sends in the outer header it received). */
static __always_inline const struct sy_dir_node *dir_prev_node(__u32 table_id, __u32 slot,
							       const struct sy_dir_node *node)
{
	const struct sy_dir_node *prev;
	__u32 *prev_id;
	void *prev_table;

	prev_table = bpf_map_lookup_elem(&sy_dir_prev_tables, &table_id);
	if (!prev_table)
		return 0;
	prev_id = bpf_map_lookup_elem(prev_table, &slot);
	if (!prev_id || *prev_id == 0)
		return 0;
	prev = bpf_map_lookup_elem(&sy_dir_nodes, prev_id);
	/* An unused id reads as family 0, never the node's. */
	if (!prev || prev->family != node->family)
		return 0;
	return prev;
}


/* dir_send(): too big once encapsulated; the caller answers (kept out of dir_send's frame:
 * the BPF stack of a call chain is 512 bytes). */
#define DIR_TOO_BIG 100

/* Encapsulate the frame to `node` and send it; or answer too-big; or drop (counted). The
 * next hop and the outer headers come from this CPU's route cache entry of the node
 * (dir_route_refresh() on a miss). */
static __always_inline int dir_send(struct xdp_md *ctx, const struct sy_dir_config *cfg,
				    const struct sy_dir_node *node, struct dir_flow *d)
{
	const struct xdp_pkt *p = &d->p;
	__u64 hash = d->hash;
	int v4 = node->family == SY_AF_INET;
	const struct sy_addr *src = v4 ? &cfg->source4 : &cfg->source6;
	__u32 slot = d->node_id & (SY_DIR_ROUTE_SLOTS - 1), overhead, reason;
	struct dir_route_query q = {};
	struct encap_hdr h = {};
	struct sy_dir_route *r;
	__u8 proto;
	int rc;

	if (d->prev && cfg->encap == SY_ENCAP_GUE)
		h.prev = &d->prev->addr;
	h.inner_len = p->ip_len;
	h.encap = cfg->encap;
	h.inner_family = p->flow.family;
	h.gue_port = cfg->gue_port;
	h.sport = bpf_htons(SY_ENCAP_SPORT_BASE | ((__u32)(hash >> 32) & SY_ENCAP_SPORT_MASK));
	h.flow_label = (__u32)(hash >> 40);
	overhead = encap_overhead(h.encap, node->family, h.prev != 0);
	proto = encap_outer_proto(h.encap, h.inner_family);

	r = bpf_map_lookup_elem(&sy_dir_routes, &slot);
	if (!r)
		return dir_drop(d, SY_DIR_DROP_NO_ROUTE);
	if (!dir_route_for(ctx, r, src, &node->addr, p->ip_len + overhead) ||
	    !dir_route_fresh(r)) {
		q.tot_len = p->ip_len + overhead;
		q.proto = proto;
		q.v4 = v4;
		rc = dir_route_refresh(ctx, r, src, &node->addr, &q);
		if (rc == DIR_ROUTE_NO_SOURCE)
			return dir_drop(d, SY_DIR_DROP_NO_SOURCE);
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
			/* Never an ICMP error about an ICMP error; IPv4 options are not quoted. */
			if (p->icmp_error || p->ip4_options || q.mtu <= overhead)
				return dir_drop(d, SY_DIR_DROP_NO_ANSWER);
			d->mtu = q.mtu - overhead;
			return DIR_TOO_BIG;
		}
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return dir_drop(d, SY_DIR_DROP_NO_ROUTE);
	}
	if (encap_push(ctx, r->hdr, r->csum, &h, overhead, v4, proto))
		return dir_drop(d, SY_DIR_DROP_RESIZE);

	reason = p->icmp_error ? SY_DIR_ICMP_TO_NODE
		 : h.encap == SY_ENCAP_GUE ? SY_DIR_ENCAP_GUE
		 : h.encap == SY_ENCAP_FOU ? SY_DIR_ENCAP_FOU
					   : SY_DIR_ENCAP_IPIP;
	dir_decided(d, reason);
	if (h.prev)
		sy_dir_count(SY_DIR_SECOND_CHANCE, p->ip_len);
	sy_dir_count_id(&sy_dir_vip_counters, d->vip_id, p->ip_len);
	sy_dir_count_id(&sy_dir_node_counters, d->node_id, p->ip_len);
	if (r->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(r->ifindex, 0);
}

SEC("xdp")
int sy_director(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct sy_frontend_key key __attribute__((aligned(8))) = {};
	struct sy_dir_config *cfg;
	struct sy_dir_node *node;
	const struct sy_dir_vip *vip;
	struct dir_flow d = {};
	struct xdp_pkt *pp = &d.p;
	__u32 zero = 0, slot, *node_id;
	void *table;
	__u64 hash;
	int rc;

	rc = xdp_parse(data, end, pp);
	if (rc == P_PASS)
		return XDP_PASS;
	if (rc == P_FRAGMENT || rc == P_MALFORMED) {
		/* No ports: cannot tell a VIP flow. The stack gets it (and, not owning the
		 * address, drops it). */
		d.slot = SY_EVENT_NO_SLOT;
		dir_decided(&d, rc == P_FRAGMENT ? SY_DIR_PASS_FRAGMENT : SY_DIR_PASS_MALFORMED);
		return XDP_PASS;
	}

	key.addr = pp->flow.daddr;
	key.port = pp->flow.dport;
	key.proto = pp->flow.proto;
	key.family = pp->flow.family;
	cfg = bpf_map_lookup_elem(&sy_dir_config, &zero);
	if (!cfg)
		return XDP_PASS;
	vip = sy_dir_vip_lookup(cfg, &key);
	if (!vip)
		return XDP_PASS;
	d.vip_id = vip->id;
	d.slot = SY_EVENT_NO_SLOT;
	if (cfg->table_size == 0)
		return dir_drop(&d, SY_DIR_DROP_NO_CONFIG);
	if (vip->table_id == 0)
		return dir_drop(&d, SY_DIR_DROP_NO_NODE);
	table = bpf_map_lookup_elem(&sy_dir_tables, &vip->table_id);
	if (!table)
		return dir_drop(&d, SY_DIR_DROP_TABLE_MISSING);

	hash = sy_flow_hash_prefixed(cfg->hash_k0, cfg->hash_k1, &vip->hash, &pp->flow);
	slot = (__u32)(hash % cfg->table_size);
	d.slot = slot;
	node_id = bpf_map_lookup_elem(table, &slot);
	if (!node_id || *node_id == 0)
		return dir_drop(&d, SY_DIR_DROP_TABLE_MISSING);
	node = bpf_map_lookup_elem(&sy_dir_nodes, node_id);
	d.node_id = *node_id;
	if (!node || node->family == 0)
		return dir_drop(&d, SY_DIR_DROP_NODE_MISSING);
	d.hash = hash;
	if ((pp->flow.proto == IPPROTO_TCP || pp->flow.proto == IPPROTO_UDP) && !pp->icmp_error &&
	    cfg->encap == SY_ENCAP_GUE)
		d.prev = dir_prev_node(vip->table_id, slot, node);
	rc = dir_send(ctx, cfg, node, &d);
	if (rc != DIR_TOO_BIG)
		return rc;
	if (xdp_answer_too_big(ctx, pp->flow.family, d.mtu))
		return dir_drop(&d, SY_DIR_DROP_NO_ANSWER);
	dir_decided(&d, SY_DIR_FRAG_NEEDED);
	return XDP_TX;
}

/* linux/bpf.h of older libbpf-dev may lack these (kernel 5.2+). */
#define SY_ADJ_ROOM_ENCAP_L3_IPV4 (1ULL << 1)
#define SY_ADJ_ROOM_ENCAP_L3_IPV6 (1ULL << 2)
#define SY_ADJ_ROOM_ENCAP_L4_UDP (1ULL << 4)

static __always_inline int probe_drop(struct __sk_buff *skb)
{
	sy_dir_count(SY_DIR_DROP_PROBE, skb->len);
	return TC_ACT_SHOT;
}

/* Writes the outer headers (`ip_len` bytes of IP, then UDP and GUE as `encap` has them) in
 * front of the inner packet; constant sizes for the verifier. */
static __always_inline int probe_store(struct __sk_buff *skb, const void *o, __u32 ip_len,
				       __u8 encap)
{
	if (encap == SY_ENCAP_IPIP)
		return ip_len == 20 ? bpf_skb_store_bytes(skb, ETH_HLEN, o, 20, 0)
				    : bpf_skb_store_bytes(skb, ETH_HLEN, o, 40, 0);
	if (encap == SY_ENCAP_FOU)
		return ip_len == 20 ? bpf_skb_store_bytes(skb, ETH_HLEN, o, 28, 0)
				    : bpf_skb_store_bytes(skb, ETH_HLEN, o, 48, 0);
	return ip_len == 20 ? bpf_skb_store_bytes(skb, ETH_HLEN, o, 32, 0)
			    : bpf_skb_store_bytes(skb, ETH_HLEN, o, 52, 0);
}

/* A health probe of the director's own (a TCP packet from its prober's socket, marked
 * SY_DIR_PROBE_MARK) goes out encapsulated like VIP traffic: outer source the director's
 * address of the family, outer destination the packet's own destination (the node), the
 * configured encapsulation and port. The kernel already routed the packet to the node, so the
 * Ethernet header stays. Anything else leaves untouched. A probe that cannot be encapsulated
 * is dropped (it must not reach the node by another path and pass). */
SEC("classifier")
int sy_dir_probe(struct __sk_buff *skb)
{
	struct sy_dir_config *cfg;
	struct encap_hdr h = {};
	struct sy_addr dst = {};
	__u32 zero = 0, overhead, hash;
	__u64 flags;
	__be16 eth_proto;
	int v4;

	if (skb->mark != SY_DIR_PROBE_MARK)
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&sy_dir_config, &zero);
	if (!cfg || bpf_skb_load_bytes(skb, 12, &eth_proto, 2))
		return probe_drop(skb);
	if (eth_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return probe_drop(skb);
		addr_from_ip4(&dst, ip.daddr);
		h.src = &cfg->source4;
		h.inner_len = bpf_ntohs(ip.tot_len);
		h.inner_family = SY_AF_INET;
		v4 = 1;
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
			return probe_drop(skb);
		__builtin_memcpy(dst.bytes, &ip6.daddr, 16);
		h.src = &cfg->source6;
		h.inner_len = sizeof(ip6) + bpf_ntohs(ip6.payload_len);
		h.inner_family = SY_AF_INET6;
		v4 = 0;
	} else {
		return probe_drop(skb);
	}
	if (!(h.src->words[0] | h.src->words[1] | h.src->words[2] | h.src->words[3]))
		return probe_drop(skb);
	h.dst = &dst;
	h.encap = cfg->encap;
	h.gue_port = cfg->gue_port;
	hash = bpf_get_hash_recalc(skb);
	h.sport = bpf_htons(0xc000 | (hash & 0x3fff));
	h.flow_label = hash;
	overhead = encap_overhead(h.encap, h.inner_family, 0);
	flags = v4 ? SY_ADJ_ROOM_ENCAP_L3_IPV4 : SY_ADJ_ROOM_ENCAP_L3_IPV6;
	if (h.encap != SY_ENCAP_IPIP)
		flags |= SY_ADJ_ROOM_ENCAP_L4_UDP;
	if (bpf_skb_adjust_room(skb, overhead, BPF_ADJ_ROOM_MAC, flags))
		return probe_drop(skb);
	if (v4) {
		struct {
			struct iphdr ip;
			struct udphdr udp;
			struct sy_gue_hdr gue;
		} o = {};

		o.ip.version = 4;
		o.ip.ihl = 5;
		o.ip.tot_len = bpf_htons(overhead + h.inner_len);
		o.ip.frag_off = bpf_htons(0x4000);
		o.ip.ttl = 64;
		o.ip.protocol = encap_outer_proto(h.encap, h.inner_family);
		o.ip.saddr = h.src->words[3];
		o.ip.daddr = dst.words[3];
		o.ip.check = ip4_header_csum(&o.ip);
		if (h.encap != SY_ENCAP_IPIP)
			encap_udp(&o.udp, &h, 1);
		if (probe_store(skb, &o, sizeof(o.ip), h.encap))
			return probe_drop(skb);
	} else {
		struct {
			struct ipv6hdr ip6;
			struct udphdr udp;
			struct sy_gue_hdr gue;
		} o = {};
		__u32 fl = h.flow_label & 0xfffff;

		o.ip6.version = 6;
		o.ip6.flow_lbl[0] = (__u8)(fl >> 16);
		o.ip6.flow_lbl[1] = (__u8)(fl >> 8);
		o.ip6.flow_lbl[2] = (__u8)fl;
		o.ip6.payload_len = bpf_htons(overhead - 40 + h.inner_len);
		o.ip6.nexthdr = encap_outer_proto(h.encap, h.inner_family);
		o.ip6.hop_limit = 64;
		__builtin_memcpy(&o.ip6.saddr, h.src->bytes, 16);
		__builtin_memcpy(&o.ip6.daddr, dst.bytes, 16);
		if (h.encap != SY_ENCAP_IPIP)
			encap_udp(&o.udp, &h, 0);
		if (probe_store(skb, &o, sizeof(o.ip6), h.encap))
			return probe_drop(skb);
	}
	sy_dir_count(SY_DIR_PROBE_ENCAP, skb->len);
	return TC_ACT_OK;
}
