/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rst.h - answering a TCP segment with the RST a closed port sends (RFC 793).
 */
#ifndef SY_LIB_RST_H
#define SY_LIB_RST_H

#include "csum.h"

/* Turn a TCP segment into the RST a closed port answers with (RFC 793). */
static SY_NOINLINE int answer_rst(struct __sk_buff *skb, const struct pkt *p)
{
	__u8 eth[ETH_HLEN], mac[ETH_ALEN];
	__u8 tcp[20] = {}, in[20];
	__u32 seq, ack, seg_len, hdr_len;
	__s64 sum;

	if (bpf_skb_load_bytes(skb, 0, eth, ETH_HLEN) ||
	    bpf_skb_load_bytes(skb, p->l4_off, in, sizeof(in)))
		return -1;
	__builtin_memcpy(mac, eth, ETH_ALEN);
	__builtin_memcpy(eth, eth + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(eth + ETH_ALEN, mac, ETH_ALEN);

	hdr_len = (in[12] >> 4) * 4;
	seg_len = p->ip_len - (p->l4_off - L3_OFF) - hdr_len;
	if (p->tcp_flags & TCP_SYN)
		seg_len += 1;
	if (p->tcp_flags & TCP_FIN)
		seg_len += 1;
	__builtin_memcpy(&seq, &in[4], 4);
	__builtin_memcpy(&ack, &in[8], 4);

	__builtin_memcpy(&tcp[0], &in[2], 2); /* sport = their dport */
	__builtin_memcpy(&tcp[2], &in[0], 2);
	if (p->tcp_flags & TCP_ACK) {
		__builtin_memcpy(&tcp[4], &ack, 4);
		tcp[13] = TCP_RST;
	} else {
		__u32 a = bpf_htonl(bpf_ntohl(seq) + seg_len);

		__builtin_memcpy(&tcp[8], &a, 4);
		tcp[13] = TCP_RST | TCP_ACK;
	}
	tcp[12] = 5 << 4;

	if (p->t.family == SY_AF_INET) {
		struct iphdr ip = {};
		__be32 pseudo[3];

		if (p->ip4_options)
			return -1;
		pseudo[0] = p->t.daddr.words[3];
		pseudo[1] = p->t.saddr.words[3];
		pseudo[2] = bpf_htonl((IPPROTO_TCP << 16) | sizeof(tcp));
		sum = bpf_csum_diff(NULL, 0, pseudo, sizeof(pseudo), 0);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)tcp, sizeof(tcp), (__u32)sum);
		__u16 c = csum_fold(sum);
		__builtin_memcpy(&tcp[16], &c, 2);

		ip.version = 4;
		ip.ihl = 5;
		ip.ttl = 64;
		ip.protocol = IPPROTO_TCP;
		ip.tot_len = bpf_htons(sizeof(ip) + sizeof(tcp));
		ip.saddr = p->t.daddr.words[3];
		ip.daddr = p->t.saddr.words[3];
		ip.check = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof(ip), 0));
		if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(ip) + sizeof(tcp), 0) ||
		    bpf_skb_store_bytes(skb, 0, eth, ETH_HLEN, 0) ||
		    bpf_skb_store_bytes(skb, L3_OFF, &ip, sizeof(ip), 0) ||
		    bpf_skb_store_bytes(skb, L3_OFF + sizeof(ip), tcp, sizeof(tcp), 0))
			return -1;
	} else {
		struct ipv6hdr ip6 = {};
		__be32 pseudo[10];

		__builtin_memcpy(&pseudo[0], p->t.daddr.bytes, 16);
		__builtin_memcpy(&pseudo[4], p->t.saddr.bytes, 16);
		pseudo[8] = bpf_htonl(sizeof(tcp));
		pseudo[9] = bpf_htonl(IPPROTO_TCP);
		sum = bpf_csum_diff(NULL, 0, pseudo, sizeof(pseudo), 0);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)tcp, sizeof(tcp), (__u32)sum);
		__u16 c = csum_fold(sum);
		__builtin_memcpy(&tcp[16], &c, 2);

		ip6.version = 6;
		ip6.payload_len = bpf_htons(sizeof(tcp));
		ip6.nexthdr = IPPROTO_TCP;
		ip6.hop_limit = 64;
		__builtin_memcpy(&ip6.saddr, p->t.daddr.bytes, 16);
		__builtin_memcpy(&ip6.daddr, p->t.saddr.bytes, 16);
		if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(ip6) + sizeof(tcp), 0) ||
		    bpf_skb_store_bytes(skb, 0, eth, ETH_HLEN, 0) ||
		    bpf_skb_store_bytes(skb, L3_OFF, &ip6, sizeof(ip6), 0) ||
		    bpf_skb_store_bytes(skb, L3_OFF + sizeof(ip6), tcp, sizeof(tcp), 0))
			return -1;
	}
	return 0;
}

#endif /* SY_LIB_RST_H */
