/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Decapsulation of director traffic on a node (TC ingress, first in the chain, before the
 * per-packet programs). See docs/director.md.
 *
 *   sy_decap
 *     1. GUE / FOU (UDP to the configured port) or IPIP (IP protocol 4 / 41)? If not: next
 *        program (TCX_NEXT), untouched.
 *     2. outer source one of the directors or, for DSR, of the cluster's nodes
 *        (sy_decap_directors)? If not: dropped, counted — a decapsulator that accepts anyone
 *        is an open relay. A node may send only DSR packets, a director only others.
 *     3. read GUE: variant 0 (version 0, data, skip hlen words; proto 4/41) or variant 1
 *        (the inner IP packet directly); IPIP: protocol 4 / 41.
 *     4. DSR (GUE with a struct sy_gue_dsr option, from a node): the flow's conntrack written
 *        (lib/dsr_decap.h), then stripped like the rest; the inner packet, addressed to a
 *        backend here, goes to the stack unmarked.
 *        second chance: GUE naming the slot's previous node (a TCP or UDP packet whose
 *        Maglev slot changed node)? A TCP SYN, a flow this node holds (conntrack entry or
 *        local socket) or a TCP packet re-sent once already is kept; any other goes on to the
 *        previous node (hops 1), with bpf_redirect. The previous node returns a UDP packet
 *        it does not hold either (hops 2): then it is a new flow of the node that chose it.
 *     5. strip the outer headers with bpf_skb_adjust_room (gso_size fixed: a GRO-merged
 *        packet keeps the segment size of its inner flow) -> next program: the per-packet path
 *        sees the client's packet to the LB IP, and the reply leaves straight to the client.
 *        An inner packet to the node's own address (the outer destination) is a director's
 *        health probe: it goes on to the node's stack as any packet to the node.
 */
#include <linux/pkt_cls.h>
#include "lib/common.h"
#include "lib/addr.h"
#include "lib/parse.h"
#include "lib/decap_maps.h"
#include "lib/ct_maps.h"
#include "lib/sock_lookup.h"
#include "lib/fib.h"
#include "lib/dsr_decap.h"

char LICENSE[] SEC("license") = "GPL";

/* linux/bpf.h of older libbpf-dev lacks these (kernel 6.3+): set skb->protocol to the inner
 * family when stripping. */
#define SY_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define SY_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)

#define TCX_NEXT_ (-1)
#define IPPROTO_IPIP_ 4
#define IPPROTO_IPV6_ 41
#define SC_KEEP (-100) /* second_chance(): decapsulate here (no TC verdict) */

/* The outer headers of an encapsulated packet. */
struct outer {
	struct sy_node_addr_key src;
	struct sy_addr dst;
	__u32 ip_len;    /* outer IP header bytes */
	__u8 proto;      /* outer IP protocol */
	__u8 pad[3];
};

/* Reads the outer IP header. 1: possibly encapsulated, 0: not. */
static __always_inline int read_outer(struct __sk_buff *skb, struct outer *o, __be16 *eth_proto)
{
	if (bpf_skb_load_bytes(skb, 12, eth_proto, 2))
		return 0;
	if (*eth_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, L3_OFF, &ip, sizeof(ip)) || ip.version != 4 ||
		    ip.ihl < 5 || (ip.frag_off & bpf_htons(0x3fff)))
			return 0;
		addr_from_ip4(&o->src.addr, ip.saddr);
		addr_from_ip4(&o->dst, ip.daddr);
		o->src.family = SY_AF_INET;
		o->ip_len = ip.ihl * 4;
		o->proto = ip.protocol;
		return 1;
	}
	if (*eth_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, L3_OFF, &ip6, sizeof(ip6)))
			return 0;
		__builtin_memcpy(o->src.addr.bytes, &ip6.saddr, 16);
		__builtin_memcpy(o->dst.bytes, &ip6.daddr, 16);
		o->src.family = SY_AF_INET6;
		o->ip_len = sizeof(ip6);
		o->proto = ip6.nexthdr;
		return 1;
	}
	return 0;
}

/* The inner family from an IP version nibble, or 0. */
static __always_inline __u8 family_of_version(__u8 first_byte)
{
	if ((first_byte >> 4) == 4)
		return SY_AF_INET;
	if ((first_byte >> 4) == 6)
		return SY_AF_INET6;
	return 0;
}

static __always_inline int decap_drop(struct __sk_buff *skb, __u32 reason)
{
	sy_decap_count(reason, skb->len);
	return TC_ACT_SHOT;
}

/* Is the (stripped) inner packet addressed to the outer destination, this node itself? That
 * is a director's health probe (docs/director.md, node health): it goes to the node's own
 * stack like any packet to the node, not marked as VIP traffic (which the per-packet path
 * drops when it translates nothing); delivered locally, it cannot loop back to a director. */
static __always_inline int to_node_itself(struct __sk_buff *skb, const struct outer *o,
					  __u8 inner_family)
{
	struct sy_addr dst = {};

	if (inner_family != o->src.family)
		return 0;
	if (inner_family == SY_AF_INET) {
		__be32 d;

		if (bpf_skb_load_bytes(skb, L3_OFF + 16, &d, 4))
			return 0;
		addr_from_ip4(&dst, d);
	} else if (bpf_skb_load_bytes(skb, L3_OFF + 24, dst.bytes, 16)) {
		return 0;
	}
	return dst.words[0] == o->dst.words[0] && dst.words[1] == o->dst.words[1] &&
	       dst.words[2] == o->dst.words[2] && dst.words[3] == o->dst.words[3];
}

/* Does this node hold the inner flow `t` (client -> VIP, TCP or UDP)? Its per-packet path's
 * conntrack entry (still usable by age), or a socket of its own: for TCP any but a listener,
 * for UDP a connected one (an unconnected socket receives every client: it holds no flow). */
static __always_inline int sc_owned(struct __sk_buff *skb, const struct sy_ct_key *t)
{
	struct sy_ct_entry *e = bpf_map_lookup_elem(&sy_ct, t);
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;
	__u32 len;
	int owned;

	if (e && !ct_expired(e, t->proto, pkt_config(), bpf_ktime_get_ns()))
		return 1;
	len = sock_tuple_of(t, &tuple);
	if (t->proto == IPPROTO_UDP) {
		sk = bpf_sk_lookup_udp(skb, &tuple, len, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return 0;
		/* A connected UDP socket is in state TCP_ESTABLISHED, an unconnected one TCP_CLOSE. */
		owned = sk->state == BPF_TCP_ESTABLISHED;
		bpf_sk_release(sk);
		return owned;
	}
	sk = bpf_skc_lookup_tcp(skb, &tuple, len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	/* A listener holds no flow: it would answer this packet with a reset. */
	owned = sk->state != BPF_TCP_LISTEN;
	bpf_sk_release(sk);
	return owned;
}

/* Reads the inner TCP or UDP packet at `off` into *t; *syn: it opens a TCP flow (SYN without
 * ACK). 0: neither (or a later fragment, or IPv6 extension headers): nothing to decide. */
static __always_inline int sc_inner_flow(struct __sk_buff *skb, __u32 off, __u8 family,
					 struct sy_ct_key *t, int *syn)
{
	__u8 flags, proto;
	__u32 l4;

	if (family == SY_AF_INET) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) ||
		    (ip.frag_off & bpf_htons(0x1fff)) || ip.ihl < 5)
			return 0;
		addr_from_ip4(&t->saddr, ip.saddr);
		addr_from_ip4(&t->daddr, ip.daddr);
		proto = ip.protocol;
		l4 = off + ip.ihl * 4;
	} else {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)))
			return 0;
		__builtin_memcpy(t->saddr.bytes, &ip6.saddr, 16);
		__builtin_memcpy(t->daddr.bytes, &ip6.daddr, 16);
		proto = ip6.nexthdr;
		l4 = off + sizeof(ip6);
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 0;
	if (bpf_skb_load_bytes(skb, l4, &t->sport, 4))
		return 0;
	*syn = 0;
	if (proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, l4 + 13, &flags, 1))
			return 0;
		*syn = (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
	}
	t->proto = proto;
	t->family = family;
	return 1;
}

/* Sends the packet on to the node its option names, swapping addresses: the outer destination
 * becomes the option's address, the option's address this node's (the old outer destination),
 * so the receiver can send it back; `hops` is written, `reason` counted. The outer source stays
 * the director's (nodes accept only directors); UDP checksum 0 as the director sends it. The
 * verdict, or SC_KEEP when there is no route (counted). */
static __always_inline int sc_resend(struct __sk_buff *skb, const struct outer *o, __u32 opt_off,
				     __u8 family, __u8 hops, __u32 reason)
{
	__u32 addr_off = opt_off + sizeof(struct sy_gue_prev);
	struct bpf_fib_lookup f = {};
	struct sy_addr to = {};
	struct route r = {};
	__u16 zero_csum = 0;
	int rc;

	if (family == SY_AF_INET) {
		if (bpf_skb_load_bytes(skb, addr_off, &to.words[3], 4))
			return SC_KEEP;
		f.family = AF_INET_FIB;
		f.ipv4_src = o->src.addr.words[3];
		f.ipv4_dst = to.words[3];
	} else {
		if (bpf_skb_load_bytes(skb, addr_off, to.bytes, 16))
			return SC_KEEP;
		f.family = AF_INET6_FIB;
		__builtin_memcpy(f.ipv6_src, o->src.addr.words, 16);
		__builtin_memcpy(f.ipv6_dst, to.words, 16);
	}
	/* Forwarded like the per-packet path's packets (any out device); no tot_len, so the
	 * kernel checks the packet itself (a GRO-merged one fits by its segments). */
	f.ifindex = skb->ingress_ifindex ? skb->ingress_ifindex : skb->ifindex;
	f.l4_protocol = IPPROTO_UDP;
	rc = bpf_fib_lookup(skb, &f, sizeof(f), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		sy_decap_count(SY_DECAP_SC_NO_ROUTE, skb->len);
		return SC_KEEP;
	}
	if (family == SY_AF_INET) {
		if (bpf_l3_csum_replace(skb, IP4_CSUM_OFF, o->dst.words[3], to.words[3], 4) ||
		    bpf_skb_store_bytes(skb, IP4_DADDR_OFF, &to.words[3], 4, 0) ||
		    bpf_skb_store_bytes(skb, addr_off, &o->dst.words[3], 4, 0))
			return decap_drop(skb, SY_DECAP_DROP_ADJUST);
	} else if (bpf_skb_store_bytes(skb, IP6_DADDR_OFF, to.bytes, 16, 0) ||
		   bpf_skb_store_bytes(skb, addr_off, o->dst.bytes, 16, 0)) {
		return decap_drop(skb, SY_DECAP_DROP_ADJUST);
	}
	if (bpf_skb_store_bytes(skb, L3_OFF + o->ip_len + 6, &zero_csum, 2, 0) ||
	    bpf_skb_store_bytes(skb, opt_off + 1, &hops, 1, 0))
		return decap_drop(skb, SY_DECAP_DROP_ADJUST);
	sy_decap_count(reason, skb->len);
	r.rc = rc;
	r.ifindex = f.ifindex;
	__builtin_memcpy(r.smac, f.smac, ETH_ALEN);
	__builtin_memcpy(r.dmac, f.dmac, ETH_ALEN);
	return forward(skb, &r);
}

/* The second chance for a GUE packet with `opt_len` bytes of private data (then the inner
 * packet): SC_KEEP, or the verdict of re-sending it (switchyard.h, struct sy_gue_prev):
 *   hops 0: kept if owned here or a TCP SYN, else re-sent to the previous node (hops 1);
 *   hops 1: TCP kept; UDP kept if owned here, else returned to the chosen node (hops 2);
 *   hops 2: kept (UDP: a new flow). So a packet travels at most two extra hops, never loops. */
static SY_NOINLINE int second_chance(struct __sk_buff *skb, const struct outer *o, __u32 opt_len,
				     __u8 inner_family)
{
	__u32 opt_off = L3_OFF + o->ip_len + 8 + sizeof(struct sy_gue_hdr);
	__u32 inner_off = opt_off + opt_len;
	struct sy_gue_prev opt;
	struct sy_ct_key t = {};
	int syn = 0, udp;

	if (opt_len < sizeof(opt) || bpf_skb_load_bytes(skb, opt_off, &opt, sizeof(opt)) ||
	    opt.kind != SY_GUE_PREV_KIND)
		return SC_KEEP; /* someone else's private data */
	/* The other node is named in the outer header's family (the re-sent packet keeps it). */
	if (opt.family != o->src.family ||
	    opt_len != 4 * (opt.family == SY_AF_INET ? SY_GUE_PREV_HLEN4 : SY_GUE_PREV_HLEN6) ||
	    !sc_inner_flow(skb, inner_off, inner_family, &t, &syn))
		goto kept;
	udp = t.proto == IPPROTO_UDP;
	if (opt.hops == 0) {
		if (syn || sc_owned(skb, &t))
			goto kept;
		return sc_resend(skb, o, opt_off, opt.family, 1, SY_DECAP_SC_FORWARDED);
	}
	if (opt.hops == 1 && udp) {
		if (sc_owned(skb, &t))
			goto kept;
		return sc_resend(skb, o, opt_off, opt.family, 2, SY_DECAP_SC_RETURNED);
	}
	if (opt.hops == 2 && udp) {
		sy_decap_count(SY_DECAP_SC_NEW_FLOW, skb->len);
		return SC_KEEP;
	}
kept:
	sy_decap_count(SY_DECAP_SC_KEPT, skb->len);
	return SC_KEEP;
}

SEC("classifier")
int sy_decap(struct __sk_buff *skb)
{
	struct sy_decap_config *cfg;
	struct outer o = {};
	__u32 zero = 0, strip, reason, inner_off, opt_len = 0, segs, *src, kinds;
	__u8 inner_family = 0, first, dsr = 0;
	__u16 gue_flags = 0;
	__be16 eth_proto, new_proto;
	__u64 flags;

	skb->cb[SY_DECAP_CB] = 0;
	if (!read_outer(skb, &o, &eth_proto))
		return TCX_NEXT_;
	if (o.proto == IPPROTO_UDP) {
		struct {
			__be16 sport, dport, len, check;
			__u8 gue[4];
		} u;

		cfg = bpf_map_lookup_elem(&sy_decap_config, &zero);
		if (!cfg || cfg->gue_port == 0)
			return TCX_NEXT_;
		if (bpf_skb_load_bytes(skb, L3_OFF + o.ip_len, &u, 4))
			return TCX_NEXT_;
		if (u.dport != cfg->gue_port)
			return TCX_NEXT_;
		src = bpf_map_lookup_elem(&sy_decap_directors, &o.src);
		if (!src)
			return decap_drop(skb, SY_DECAP_DROP_NOT_DIRECTOR);
		if (bpf_skb_load_bytes(skb, L3_OFF + o.ip_len, &u, sizeof(u)))
			return decap_drop(skb, SY_DECAP_DROP_MALFORMED);
		first = u.gue[0];
		if ((first >> SY_GUE_VERSION_SHIFT) == 1) {
			/* Variant 1 (FOU): the inner IP header right after UDP. */
			strip = o.ip_len + 8;
			inner_family = family_of_version(first);
			reason = SY_DECAP_FOU;
		} else if ((first >> 5) == 0) {
			/* Variant 0, C = 0: skip the optional fields (hlen words). */
			opt_len = 4 * (first & SY_GUE_HLEN_MASK);
			gue_flags = (__u16)u.gue[2] << 8 | u.gue[3];
			strip = o.ip_len + 8 + sizeof(struct sy_gue_hdr) + opt_len;
			inner_family = u.gue[1] == IPPROTO_IPIP_ ? SY_AF_INET
				     : u.gue[1] == IPPROTO_IPV6_ ? SY_AF_INET6
								 : 0;
			reason = SY_DECAP_GUE;
		} else {
			return decap_drop(skb, SY_DECAP_DROP_MALFORMED);
		}
	} else if (o.proto == IPPROTO_IPIP_ || o.proto == IPPROTO_IPV6_) {
		src = bpf_map_lookup_elem(&sy_decap_directors, &o.src);
		if (!src)
			return decap_drop(skb, SY_DECAP_DROP_NOT_DIRECTOR);
		strip = o.ip_len;
		inner_family = o.proto == IPPROTO_IPIP_ ? SY_AF_INET : SY_AF_INET6;
		reason = SY_DECAP_IPIP;
	} else {
		return TCX_NEXT_;
	}

	/* The inner header must be the IP version the outer one announced. */
	if (strip > 255)
		return decap_drop(skb, SY_DECAP_DROP_MALFORMED);
	inner_off = L3_OFF + strip;
	if (!inner_family || bpf_skb_load_bytes(skb, inner_off, &first, 1) ||
	    family_of_version(first) != inner_family)
		return decap_drop(skb, SY_DECAP_DROP_MALFORMED);

	/* 0: written by an agent before DSR, a director. */
	kinds = *src ? *src : SY_DECAP_SRC_DIRECTOR;
	/* Flags 0: the optional words are private data: DSR's, or maybe the second chance's. */
	if (opt_len && gue_flags == 0 && dsr_is_option(skb, inner_off - opt_len)) {
		int rc;

		if (!(kinds & SY_DECAP_SRC_NODE))
			return decap_drop(skb, SY_DECAP_DROP_NOT_NODE);
		rc = dsr_accept(skb, inner_off - opt_len, opt_len, inner_family);
		if (rc != DSR_OK)
			return rc;
		dsr = 1;
	} else if (!(kinds & SY_DECAP_SRC_DIRECTOR)) {
		return decap_drop(skb, SY_DECAP_DROP_NOT_DIRECTOR);
	} else if (opt_len && gue_flags == 0) {
		int rc = second_chance(skb, &o, opt_len, inner_family);

		if (rc != SC_KEEP)
			return rc;
	}

	/* Read before stripping: bpf_skb_adjust_room zeroes gso_segs (recomputed later). */
	segs = skb->gso_segs;
	flags = BPF_F_ADJ_ROOM_FIXED_GSO;
	new_proto = inner_family == SY_AF_INET ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
	if (new_proto != eth_proto)
		flags |= inner_family == SY_AF_INET ? SY_ADJ_ROOM_DECAP_L3_IPV4
						    : SY_ADJ_ROOM_DECAP_L3_IPV6;
	if (bpf_skb_adjust_room(skb, -(__s32)strip, BPF_ADJ_ROOM_MAC, flags))
		return decap_drop(skb, SY_DECAP_DROP_ADJUST);
	if (new_proto != eth_proto && bpf_skb_store_bytes(skb, 12, &new_proto, 2, 0))
		return decap_drop(skb, SY_DECAP_DROP_ADJUST);
	if (!dsr)
		sy_decap_count(reason, skb->len);
	if (segs > 1)
		sy_decap_count(SY_DECAP_GRO_MERGED, skb->len);
	if (!dsr && !to_node_itself(skb, &o, inner_family))
		skb->cb[SY_DECAP_CB] = SY_DECAP_CB_MARK;
	return TCX_NEXT_;
}
