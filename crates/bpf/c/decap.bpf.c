/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Decapsulation of director traffic on a node (TC ingress, first in the chain, before the
 * per-packet programs). See docs/director.md.
 *
 *   sy_decap
 *     1. GUE / FOU (UDP to the configured port) or IPIP (IP protocol 4 / 41)? If not: next
 *        program (TCX_NEXT), untouched.
 *     2. outer source one of the directors (sy_decap_directors)? If not: dropped, counted —
 *        a decapsulator that accepts anyone is an open relay.
 *     3. read GUE: variant 0 (version 0, data, skip hlen words; proto 4/41) or variant 1
 *        (the inner IP packet directly); IPIP: protocol 4 / 41.
 *     4. strip the outer headers with bpf_skb_adjust_room (gso_size fixed: a GRO-merged
 *        packet keeps the segment size of its inner flow) -> next program: the per-packet path
 *        sees the client's packet to the LB IP, and the reply leaves straight to the client.
 */
#include <linux/pkt_cls.h>
#include "lib/common.h"
#include "lib/addr.h"
#include "lib/parse.h"
#include "lib/decap_maps.h"

char LICENSE[] SEC("license") = "GPL";

/* linux/bpf.h of older libbpf-dev lacks these (kernel 6.3+): set skb->protocol to the inner
 * family when stripping. */
#define SY_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define SY_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)

#define TCX_NEXT_ (-1)
#define IPPROTO_IPIP_ 4
#define IPPROTO_IPV6_ 41

/* The outer headers of an encapsulated packet. */
struct outer {
	struct sy_node_addr_key src;
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

SEC("classifier")
int sy_decap(struct __sk_buff *skb)
{
	struct sy_decap_config *cfg;
	struct outer o = {};
	__u32 zero = 0, strip, reason, inner_off;
	__u8 inner_family = 0, first;
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
		if (!bpf_map_lookup_elem(&sy_decap_directors, &o.src))
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
			strip = o.ip_len + 8 + sizeof(struct sy_gue_hdr) +
				4 * (first & SY_GUE_HLEN_MASK);
			inner_family = u.gue[1] == IPPROTO_IPIP_ ? SY_AF_INET
				     : u.gue[1] == IPPROTO_IPV6_ ? SY_AF_INET6
								 : 0;
			reason = SY_DECAP_GUE;
		} else {
			return decap_drop(skb, SY_DECAP_DROP_MALFORMED);
		}
	} else if (o.proto == IPPROTO_IPIP_ || o.proto == IPPROTO_IPV6_) {
		if (!bpf_map_lookup_elem(&sy_decap_directors, &o.src))
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

	flags = BPF_F_ADJ_ROOM_FIXED_GSO;
	new_proto = inner_family == SY_AF_INET ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
	if (new_proto != eth_proto)
		flags |= inner_family == SY_AF_INET ? SY_ADJ_ROOM_DECAP_L3_IPV4
						    : SY_ADJ_ROOM_DECAP_L3_IPV6;
	if (bpf_skb_adjust_room(skb, -(__s32)strip, BPF_ADJ_ROOM_MAC, flags))
		return decap_drop(skb, SY_DECAP_DROP_ADJUST);
	if (new_proto != eth_proto && bpf_skb_store_bytes(skb, 12, &new_proto, 2, 0))
		return decap_drop(skb, SY_DECAP_DROP_ADJUST);
	sy_decap_count(reason, skb->len);
	skb->cb[SY_DECAP_CB] = SY_DECAP_CB_MARK;
	return TCX_NEXT_;
}
