/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xdp_icmp.h - turn a frame that is too big to encapsulate into the ICMP fragmentation-needed
 * (IPv4) or packet-too-big (IPv6) answer about itself, from the address the client sent to,
 * quoting the IP header and the first 8 bytes of the transport header (RFC 792, RFC 4443).
 */
#ifndef SY_LIB_XDP_ICMP_H
#define SY_LIB_XDP_ICMP_H

#include "parse.h"

#define SY_QUOTE4 28 /* IPv4 header (no options) + 8 */
#define SY_QUOTE6 48 /* IPv6 header + 8 */

/* Returns 0 with the answer in the frame (send it with XDP_TX), or -1. The IPv4 header must
 * have no options; `mtu` is the largest inner packet that fits. */
static SY_NOINLINE int xdp_answer_too_big(struct xdp_md *ctx, __u8 family, __u32 mtu)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u8 mac[2][ETH_ALEN];
	struct ethhdr *eth;
	__s64 sum;

	if (data + ETH_HLEN > end)
		return -1;
	__builtin_memcpy(mac[0], data, ETH_ALEN);
	__builtin_memcpy(mac[1], data + ETH_ALEN, ETH_ALEN);
	if (family == SY_AF_INET) {
		__u8 quote[SY_QUOTE4];
		struct iphdr *ip;
		struct icmphdr_ {
			__u8 type, code;
			__u16 check;
			__be16 unused, mtu;
		} *icmp;
		__be32 client, vip;

		if (data + ETH_HLEN + SY_QUOTE4 > end)
			return -1;
		__builtin_memcpy(quote, data + ETH_HLEN, SY_QUOTE4);
		__builtin_memcpy(&client, quote + 12, 4);
		__builtin_memcpy(&vip, quote + 16, 4);
		if (bpf_xdp_adjust_head(ctx, -(int)(sizeof(struct iphdr) + 8)))
			return -1;
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		eth = data;
		ip = data + ETH_HLEN;
		icmp = (void *)(ip + 1);
		if ((void *)(icmp + 1) + SY_QUOTE4 > end)
			return -1;
		__builtin_memcpy(eth->h_dest, mac[1], ETH_ALEN);
		__builtin_memcpy(eth->h_source, mac[0], ETH_ALEN);
		eth->h_proto = bpf_htons(ETH_P_IP);
		ip->version = 4;
		ip->ihl = 5;
		ip->tos = 0;
		ip->tot_len = bpf_htons(sizeof(*ip) + 8 + SY_QUOTE4);
		ip->id = 0;
		ip->frag_off = 0;
		ip->ttl = 64;
		ip->protocol = IPPROTO_ICMP;
		ip->check = 0;
		ip->saddr = vip;
		ip->daddr = client;
		icmp->type = ICMP_DEST_UNREACH_;
		icmp->code = ICMP_FRAG_NEEDED_;
		icmp->check = 0;
		icmp->unused = 0;
		icmp->mtu = bpf_htons((__u16)(mtu < 68 ? 68 : mtu > 0xffff ? 0xffff : mtu));
		sum = bpf_csum_diff(NULL, 0, (__be32 *)icmp, 8, 0);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)quote, SY_QUOTE4, (__u32)sum);
		icmp->check = csum_fold(sum);
		{
			const __u16 *w = (const __u16 *)ip;
			__u32 s = 0;
			int i;

			for (i = 0; i < 10; i++)
				s += w[i];
			ip->check = csum_fold(s);
		}
		return bpf_xdp_adjust_tail(ctx, (int)(ETH_HLEN + sizeof(*ip) + 8 + SY_QUOTE4) -
						       (int)(end - data))
			       ? -1
			       : 0;
	} else {
		__u8 quote[SY_QUOTE6];
		struct ipv6hdr *ip6;
		struct icmp6hdr_ {
			__u8 type, code;
			__u16 check;
			__be32 mtu;
		} *icmp;
		__be32 pseudo[10];

		if (data + ETH_HLEN + SY_QUOTE6 > end)
			return -1;
		__builtin_memcpy(quote, data + ETH_HLEN, SY_QUOTE6);
		if (bpf_xdp_adjust_head(ctx, -(int)(sizeof(struct ipv6hdr) + 8)))
			return -1;
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		eth = data;
		ip6 = data + ETH_HLEN;
		icmp = (void *)(ip6 + 1);
		if ((void *)(icmp + 1) + SY_QUOTE6 > end)
			return -1;
		__builtin_memcpy(eth->h_dest, mac[1], ETH_ALEN);
		__builtin_memcpy(eth->h_source, mac[0], ETH_ALEN);
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		ip6->version = 6;
		ip6->priority = 0;
		ip6->flow_lbl[0] = 0;
		ip6->flow_lbl[1] = 0;
		ip6->flow_lbl[2] = 0;
		ip6->payload_len = bpf_htons(8 + SY_QUOTE6);
		ip6->nexthdr = IPPROTO_ICMPV6_;
		ip6->hop_limit = 64;
		/* From the VIP (the quoted destination) to the client (the quoted source). */
		__builtin_memcpy(&ip6->saddr, quote + 24, 16);
		__builtin_memcpy(&ip6->daddr, quote + 8, 16);
		icmp->type = ICMP6_PKT_TOO_BIG_;
		icmp->code = 0;
		icmp->check = 0;
		icmp->mtu = bpf_htonl(mtu < 1280 ? 1280 : mtu);
		__builtin_memcpy(&pseudo[0], quote + 24, 16);
		__builtin_memcpy(&pseudo[4], quote + 8, 16);
		pseudo[8] = bpf_htonl(8 + SY_QUOTE6);
		pseudo[9] = bpf_htonl(IPPROTO_ICMPV6_);
		sum = bpf_csum_diff(NULL, 0, pseudo, sizeof(pseudo), 0);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)icmp, 8, (__u32)sum);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)quote, SY_QUOTE6, (__u32)sum);
		icmp->check = csum_fold(sum);
		return bpf_xdp_adjust_tail(ctx, (int)(ETH_HLEN + sizeof(*ip6) + 8 + SY_QUOTE6) -
						       (int)(end - data))
			       ? -1
			       : 0;
	}
}

#endif /* SY_LIB_XDP_ICMP_H */
