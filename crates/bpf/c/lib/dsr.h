/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dsr.h - DSR for NodePort (issue 20), TC only: a packet of a flow whose backend runs on
 * another node (sy_ct entry with SY_CT_F_DSR) is DNATed to the backend, the client's address
 * kept, and put in GUE (the director's wire format, docs/director.md) with a struct sy_gue_dsr
 * option naming the frontend the client addressed, outer source this node, outer destination
 * the backend's node (sy_dsr_nodes). That node's decapsulation (c/decap.bpf.c, lib/dsr_decap.h)
 * writes the conntrack that turns the backend's replies into frontend -> client, which leave
 * from there straight to the client. The outer headers are never translated.
 *
 * MTU: the route to the backend's node is looked up with the encapsulated length; when it is
 * too small the client gets frag-needed / packet-too-big with the room left for the inner
 * packet (its MTU minus the outer headers), as the director answers. A GSO packet (segments a
 * veth or GRO passed on whole) keeps its segments' size on the wire: bpf_skb_adjust_room
 * lowers gso_size by the outer headers, so each segment fits where the original one did.
 */
#ifndef SY_LIB_DSR_H
#define SY_LIB_DSR_H

#include <linux/udp.h>
#include "xlat.h"

#define DSR_IPPROTO_IPIP 4
#define DSR_IPPROTO_IPV6 41
#define DSR_IPPROTO_UDP 17

/* The outer headers as written (the address of the option follows struct sy_gue_dsr). */
struct dsr_outer4 {
	struct iphdr ip;
	struct udphdr udp;
	struct sy_gue_hdr gue;
	struct sy_gue_dsr opt;
	__be32 frontend;
};
_Static_assert(sizeof(struct dsr_outer4) == 40, "no padding in the outer headers");

struct dsr_outer6 {
	struct ipv6hdr ip6;
	struct udphdr udp;
	struct sy_gue_hdr gue;
	struct sy_gue_dsr opt;
	__u8 frontend[16];
};
_Static_assert(sizeof(struct dsr_outer6) == 72, "no padding in the outer headers");

/* Bytes DSR puts in front of the inner packet of this family. */
static __always_inline __u32 dsr_overhead(__u8 family)
{
	return family == SY_AF_INET ? sizeof(struct dsr_outer4) : sizeof(struct dsr_outer6);
}

/* The inner packet's length on the wire: one segment's for a GSO packet (its IP and
 * transport headers plus gso_size), else the IP length. */
static __always_inline __u32 dsr_wire_len(struct __sk_buff *skb, const struct pkt *p)
{
	__u8 doff = 0;
	__u32 l4 = 8;

	if (skb->gso_segs <= 1 || !skb->gso_size)
		return p->ip_len;
	if (p->t.proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, p->l4_off + 12, &doff, 1))
			return p->ip_len;
		l4 = (doff >> 4) * 4;
	}
	return skb->gso_size + (p->l4_off - L3_OFF) + l4;
}

/* Writes the outer headers in the room bpf_skb_adjust_room made at L3_OFF. */
static __always_inline int dsr_write_outer(struct __sk_buff *skb, const struct pkt *p,
					   const struct sy_addr *src, const struct sy_addr *node,
					   __be16 gue_port)
{
	__u32 hash = bpf_get_hash_recalc(skb), inner = skb->len - L3_OFF;
	__be16 sport = bpf_htons(SY_ENCAP_SPORT_BASE | (hash & SY_ENCAP_SPORT_MASK));

	if (p->t.family == SY_AF_INET) {
		struct dsr_outer4 h = {};
		const __u16 *w = (const __u16 *)&h.ip;
		__u32 sum = 0;
		int i;

		inner -= sizeof(h);
		h.ip.version = 4;
		h.ip.ihl = 5;
		h.ip.tot_len = bpf_htons(sizeof(h) + inner);
		h.ip.frag_off = bpf_htons(0x4000); /* DF: too-big is answered before encapsulating */
		h.ip.ttl = 64;
		h.ip.protocol = DSR_IPPROTO_UDP;
		h.ip.saddr = src->words[3];
		h.ip.daddr = node->words[3];
		for (i = 0; i < 10; i++)
			sum += w[i];
		h.ip.check = csum_fold(sum);
		h.udp.source = sport;
		h.udp.dest = gue_port;
		h.udp.len = bpf_htons(sizeof(h) - sizeof(h.ip) + inner);
		h.gue.vc_hlen = SY_GUE_DSR_HLEN4;
		h.gue.proto = DSR_IPPROTO_IPIP;
		h.opt.kind = SY_GUE_DSR_KIND;
		h.opt.family = SY_AF_INET;
		h.opt.port = p->t.dport;
		h.frontend = p->t.daddr.words[3];
		return bpf_skb_store_bytes(skb, L3_OFF, &h, sizeof(h), 0);
	} else {
		struct dsr_outer6 h = {};

		inner -= sizeof(h);
		h.ip6.version = 6;
		h.ip6.flow_lbl[0] = (__u8)(hash >> 16) & 0x0f;
		h.ip6.flow_lbl[1] = (__u8)(hash >> 8);
		h.ip6.flow_lbl[2] = (__u8)hash;
		h.ip6.payload_len = bpf_htons(sizeof(h) - sizeof(h.ip6) + inner);
		h.ip6.nexthdr = DSR_IPPROTO_UDP;
		h.ip6.hop_limit = 64;
		__builtin_memcpy(&h.ip6.saddr, src->bytes, 16);
		__builtin_memcpy(&h.ip6.daddr, node->bytes, 16);
		h.udp.source = sport;
		h.udp.dest = gue_port;
		h.udp.len = h.ip6.payload_len;
		h.gue.vc_hlen = SY_GUE_DSR_HLEN6;
		h.gue.proto = DSR_IPPROTO_IPV6;
		h.opt.kind = SY_GUE_DSR_KIND;
		h.opt.family = SY_AF_INET6;
		h.opt.port = p->t.dport;
		__builtin_memcpy(h.frontend, p->t.daddr.bytes, 16);
		/* UDP checksum 0: the tunnel exception of RFC 6935/6936, as the director sends; the
		 * inner packet keeps its own checksums end to end. */
		return bpf_skb_store_bytes(skb, L3_OFF, &h, sizeof(h), 0);
	}
}

/* A packet of a DSR flow (x: its forward translation from the sy_ct entry): DNAT, encapsulate
 * to the backend's node, forward. NF_TOO_BIG (x->mtu: the inner MTU) when the route is too
 * small, before anything was changed. */
static SY_NOINLINE int dsr_forward(struct __sk_buff *skb, const struct pkt *p, struct xlat *x)
{
	struct sy_pkt_config *cfg = pkt_config();
	struct sy_node_addr_key k = {};
	const struct sy_addr *src;
	struct sy_addr *node;
	struct route r = {};
	__u32 overhead = dsr_overhead(p->t.family);
	__u64 flags;

	if (!cfg)
		return drop(skb, p, SY_REASON_PKT_DROP_SNAT_NO_ADDR);
	src = p->t.family == SY_AF_INET ? &cfg->snat_addr4 : &cfg->snat_addr6;
	if (!(src->words[0] | src->words[1] | src->words[2] | src->words[3]))
		return drop(skb, p, SY_REASON_PKT_DROP_SNAT_NO_ADDR);
	k.addr = x->d;
	k.family = p->t.family;
	node = bpf_map_lookup_elem(&sy_dsr_nodes, &k);
	if (!node)
		return drop(skb, p, SY_REASON_PKT_DROP_DSR_NO_NODE);

	/* A GSO packet's segments shrink by the outer headers (bpf_skb_adjust_room below). */
	route_lookup_len(skb, p->t.family, DSR_IPPROTO_UDP, src, node,
			 dsr_wire_len(skb, p) + (skb->gso_segs <= 1 ? overhead : 0), &r);
	if (r.rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		if (!p->df)
			return drop(skb, p, SY_REASON_PKT_DROP_DSR_TOO_BIG);
		x->mtu = r.mtu > overhead ? r.mtu - overhead : 0;
		return NF_TOO_BIG;
	}

	if (rewrite(skb, p, &x->s, x->sp, &x->d, x->dp))
		return drop(skb, p, SY_REASON_PKT_DROP_REWRITE);
	flags = BPF_F_ADJ_ROOM_ENCAP_L4_UDP | (p->t.family == SY_AF_INET
						     ? BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
						     : BPF_F_ADJ_ROOM_ENCAP_L3_IPV6);
	if (bpf_skb_adjust_room(skb, (__s32)overhead, BPF_ADJ_ROOM_MAC, flags) ||
	    dsr_write_outer(skb, p, src, node, cfg->dsr_port))
		return drop(skb, p, SY_REASON_PKT_DROP_DSR_ENCAP);
	sy_count(x->reason, skb->len);
	return forward(skb, &r);
}

/* dsr_forward(), answering frag-needed / packet-too-big when the route is too small. */
static __always_inline int dsr_apply(struct __sk_buff *skb, const struct pkt *p, struct xlat *x)
{
	int rc = dsr_forward(skb, p, x);

	if (rc == NF_TOO_BIG)
		return answer_too_big(skb, p, x->mtu);
	return rc;
}

#endif /* SY_LIB_DSR_H */
