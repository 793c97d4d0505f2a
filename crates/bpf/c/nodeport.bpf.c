/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-packet load balancing at TC for traffic from outside the node: NodePort (node address),
 * LoadBalancer ingress IPs and ExternalIPs. See docs/datapath.md "Per-packet path".
 *
 *   sy_nodeport_ingress  (TC ingress of every --devices device)
 *     1. ICMP error about a translated flow -> rewrite outer and quoted headers, forward.
 *     2. reply of a SNATed flow (sy_nat hit)  -> rewrite to frontend -> client, forward.
 *     3. known flow (sy_ct hit, not expired, backend still present) -> same translation.
 *     4. frontend (default scope) -> source ranges -> empty? (drop / RST / ICMP) -> pick
 *        (affinity, Maglev over the 5-tuple, random) -> SNAT port for remote backends ->
 *        write sy_ct + sy_nat -> rewrite -> forward.
 *   sy_nodeport_egress   (TC egress of the same devices)
 *     replies of local backends (and ICMP errors they send) translated back to the frontend.
 *
 * Forwarding: bpf_fib_lookup on the rewritten addresses, then bpf_redirect (neighbour known)
 * or bpf_redirect_neigh; anything else goes to the stack (TC_ACT_OK). Redirecting ourselves
 * is required for SNATed packets (a packet with a local source arriving on a device is a
 * martian to the stack) and skips a second routing decision for the rest. A packet larger
 * than the chosen route's MTU (IPv6, or IPv4 with DF) is answered with ICMP frag-needed /
 * packet-too-big from the frontend address instead of being redirected and silently dropped.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#define SY_PER_PACKET_MAPS
#include "switchyard.h"
#include "lb.h"

char LICENSE[] SEC("license") = "GPL";

#define SY_NOINLINE __attribute__((noinline))
#define NSEC_PER_SEC 1000000000ull
#define AF_INET_FIB 2
#define AF_INET6_FIB 10

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

#define IPPROTO_ICMPV6_ 58
#define ICMP_DEST_UNREACH_ 3
#define ICMP_TIME_EXCEEDED_ 11
#define ICMP_PORT_UNREACH_ 3
#define ICMP_FRAG_NEEDED_ 4
#define ICMP6_DST_UNREACH_ 1
#define ICMP6_PKT_TOO_BIG_ 2
#define ICMP6_TIME_EXCEED_ 3
#define ICMP6_PORT_UNREACH_ 4

/* Defaults when sy_pkt_config has not been written (all-zero timeouts). */
#define DEFAULT_TIMEOUT_TCP_SYN 60
#define DEFAULT_TIMEOUT_TCP_ESTABLISHED 21600
#define DEFAULT_TIMEOUT_TCP_CLOSING 10
#define DEFAULT_TIMEOUT_UDP 60
#define DEFAULT_TIMEOUT_OTHER 30

/* Offsets inside the Ethernet frame. */
#define L3_OFF ETH_HLEN
#define IP4_CSUM_OFF (L3_OFF + 10)
#define IP4_SADDR_OFF (L3_OFF + 12)
#define IP4_DADDR_OFF (L3_OFF + 16)
#define IP6_SADDR_OFF (L3_OFF + 8)
#define IP6_DADDR_OFF (L3_OFF + 24)

/* What parse() found. */
enum parse_result {
	P_OK = 0,      /* IPv4/IPv6 with TCP or UDP ports, or an ICMP error */
	P_PASS,        /* not for us: other ethertypes, protocols, extension headers */
	P_MALFORMED,   /* truncated transport header */
	P_FRAGMENT,    /* non-first fragment */
};

struct pkt {
	struct sy_ct_key t; /* the packet's own tuple */
	__u32 l4_off;
	__u32 ip_len;       /* IPv4 total length / IPv6 payload length + 40 */
	__u8 tcp_flags;
	__u8 df;            /* IPv4 DF set (IPv6: always 1, routers never fragment) */
	__u8 ip4_options;   /* IPv4 header longer than 20 bytes */
	__u8 icmp_error;    /* an ICMP(v6) error; inner fields valid */
	/* ICMP errors: the quoted packet */
	struct sy_ct_key inner;
	__u32 inner_l3_off;
	__u32 inner_l4_off;
};

static __always_inline struct sy_pkt_config *pkt_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sy_pkt_config, &zero);
}

static __always_inline int is_icmp_error(__u8 family, __u8 type)
{
	if (family == SY_AF_INET)
		return type == ICMP_DEST_UNREACH_ || type == ICMP_TIME_EXCEEDED_;
	return type == ICMP6_DST_UNREACH_ || type == ICMP6_PKT_TOO_BIG_ || type == ICMP6_TIME_EXCEED_;
}

/* Parse the quoted packet of an ICMP error at off (after the 8-byte ICMP header). */
static __always_inline int parse_inner(struct __sk_buff *skb, struct pkt *p, __u32 off)
{
	__be16 ports[2];

	p->inner_l3_off = off;
	p->inner.family = p->t.family;
	if (p->t.family == SY_AF_INET) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
			return P_MALFORMED;
		if (ip.version != 4 || ip.ihl < 5)
			return P_MALFORMED;
		addr_from_ip4(&p->inner.saddr, ip.saddr);
		addr_from_ip4(&p->inner.daddr, ip.daddr);
		p->inner.proto = ip.protocol;
		p->inner_l4_off = off + ip.ihl * 4;
	} else {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)))
			return P_MALFORMED;
		__builtin_memcpy(p->inner.saddr.bytes, &ip6.saddr, 16);
		__builtin_memcpy(p->inner.daddr.bytes, &ip6.daddr, 16);
		p->inner.proto = ip6.nexthdr;
		p->inner_l4_off = off + sizeof(ip6);
	}
	if (p->inner.proto != IPPROTO_TCP && p->inner.proto != IPPROTO_UDP)
		return P_PASS;
	if (bpf_skb_load_bytes(skb, p->inner_l4_off, ports, sizeof(ports)))
		return P_MALFORMED;
	p->inner.sport = ports[0];
	p->inner.dport = ports[1];
	p->icmp_error = 1;
	return P_OK;
}

static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	__be16 eth_proto;

	if (bpf_skb_load_bytes(skb, 12, &eth_proto, sizeof(eth_proto)))
		return P_PASS;
	if (eth_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, L3_OFF, &ip, sizeof(ip)))
			return P_PASS;
		if (ip.version != 4 || ip.ihl < 5)
			return P_PASS;
		p->t.family = SY_AF_INET;
		addr_from_ip4(&p->t.saddr, ip.saddr);
		addr_from_ip4(&p->t.daddr, ip.daddr);
		p->t.proto = ip.protocol;
		p->ip_len = bpf_ntohs(ip.tot_len);
		p->df = (ip.frag_off & bpf_htons(0x4000)) != 0;
		p->ip4_options = ip.ihl != 5;
		p->l4_off = L3_OFF + ip.ihl * 4;
		if (ip.frag_off & bpf_htons(0x1fff))
			return P_FRAGMENT;
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, L3_OFF, &ip6, sizeof(ip6)))
			return P_PASS;
		p->t.family = SY_AF_INET6;
		__builtin_memcpy(p->t.saddr.bytes, &ip6.saddr, 16);
		__builtin_memcpy(p->t.daddr.bytes, &ip6.daddr, 16);
		p->t.proto = ip6.nexthdr;
		p->ip_len = bpf_ntohs(ip6.payload_len) + sizeof(ip6);
		p->df = 1;
		p->l4_off = L3_OFF + sizeof(ip6);
	} else {
		return P_PASS;
	}

	if (p->t.proto == IPPROTO_TCP) {
		__u8 hdr[14];

		if (bpf_skb_load_bytes(skb, p->l4_off, hdr, sizeof(hdr)))
			return P_MALFORMED;
		__builtin_memcpy(&p->t.sport, &hdr[0], 2);
		__builtin_memcpy(&p->t.dport, &hdr[2], 2);
		p->tcp_flags = hdr[13];
		return P_OK;
	}
	if (p->t.proto == IPPROTO_UDP) {
		__be16 ports[2];

		if (bpf_skb_load_bytes(skb, p->l4_off, ports, sizeof(ports)))
			return P_MALFORMED;
		p->t.sport = ports[0];
		p->t.dport = ports[1];
		return P_OK;
	}
	if ((p->t.family == SY_AF_INET && p->t.proto == IPPROTO_ICMP) ||
	    (p->t.family == SY_AF_INET6 && p->t.proto == IPPROTO_ICMPV6_)) {
		__u8 type;

		if (bpf_skb_load_bytes(skb, p->l4_off, &type, 1))
			return P_MALFORMED;
		if (!is_icmp_error(p->t.family, type))
			return P_PASS;
		return parse_inner(skb, p, p->l4_off + 8);
	}
	return P_PASS;
}

/* ---- conntrack ---- */

static __always_inline __u64 ct_timeout_ns(const struct sy_ct_entry *e, __u8 proto,
					   const struct sy_pkt_config *cfg)
{
	__u32 s;

	if (proto == IPPROTO_TCP) {
		if (e->state == SY_CT_SYN_SENT)
			s = cfg && cfg->timeout_tcp_syn_s ? cfg->timeout_tcp_syn_s : DEFAULT_TIMEOUT_TCP_SYN;
		else if (e->state == SY_CT_CLOSING)
			s = cfg && cfg->timeout_tcp_closing_s ? cfg->timeout_tcp_closing_s
							      : DEFAULT_TIMEOUT_TCP_CLOSING;
		else
			s = cfg && cfg->timeout_tcp_established_s ? cfg->timeout_tcp_established_s
								  : DEFAULT_TIMEOUT_TCP_ESTABLISHED;
	} else if (proto == IPPROTO_UDP) {
		s = cfg && cfg->timeout_udp_s ? cfg->timeout_udp_s : DEFAULT_TIMEOUT_UDP;
	} else {
		s = cfg && cfg->timeout_other_s ? cfg->timeout_other_s : DEFAULT_TIMEOUT_OTHER;
	}
	return (__u64)s * NSEC_PER_SEC;
}

static __always_inline int ct_expired(const struct sy_ct_entry *e, __u8 proto,
				      const struct sy_pkt_config *cfg, __u64 now)
{
	return now - e->last_seen_ns > ct_timeout_ns(e, proto, cfg);
}

/* TCP state machine, both directions. */
static __always_inline void ct_update(struct sy_ct_entry *e, const struct pkt *p, int reply,
				      __u64 now)
{
	e->last_seen_ns = now;
	if (reply)
		e->flags |= SY_CT_F_REPLY_SEEN;
	if (p->t.proto != IPPROTO_TCP) {
		e->state = SY_CT_ESTABLISHED;
		return;
	}
	if (p->tcp_flags & (TCP_FIN | TCP_RST))
		e->state = SY_CT_CLOSING;
	else if (reply && e->state == SY_CT_SYN_SENT)
		e->state = SY_CT_ESTABLISHED;
}

/* The reply tuple of a translated flow: what the backend sends. */
static __always_inline void nat_key_of(struct sy_ct_key *k, const struct sy_ct_entry *e,
				       const struct sy_ct_key *orig)
{
	k->saddr = e->nat_daddr;
	k->daddr = e->nat_saddr;
	k->sport = e->nat_dport;
	k->dport = e->nat_sport;
	k->proto = orig->proto;
	k->family = orig->family;
	k->pad[0] = 0;
	k->pad[1] = 0;
}

/* Who owns the SNAT port of the sy_nat entry at key: NAT_FREE (no flow, or its flow has
 * expired and is not a closed TCP flow in its hold), NAT_HELD (a closed TCP flow within
 * SY_SNAT_TCP_HOLD_S of its last packet; *idle_ns set to how long ago that was) or NAT_LIVE. */
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
	if (!ct_expired(e, key->proto, cfg, now))
		return NAT_LIVE;
	idle = now - e->last_seen_ns;
	if (key->proto == IPPROTO_TCP && e->state == SY_CT_CLOSING &&
	    idle <= (__u64)SY_SNAT_TCP_HOLD_S * NSEC_PER_SEC) {
		*idle_ns = idle;
		return NAT_HELD;
	}
	return NAT_FREE;
}

/* ---- checksums and rewriting ---- */

static __always_inline __u16 csum_fold(__s64 sum)
{
	__u32 c = (__u32)sum;

	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

static __always_inline __u32 l4_csum_off(const struct pkt *p)
{
	return p->l4_off + (p->t.proto == IPPROTO_TCP ? 16 : 6);
}

static __always_inline __u64 l4_csum_flags(const struct pkt *p)
{
	return p->t.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* Replace an address in the IP header (and the pseudo-header part of the L4 checksum). */
static __always_inline int set_addr(struct __sk_buff *skb, const struct pkt *p, int dst,
				    const struct sy_addr *old, const struct sy_addr *new)
{
	__u32 csum = l4_csum_off(p);

	if (addr_eq(old, new))
		return 0;
	if (p->t.family == SY_AF_INET) {
		__u32 off = dst ? IP4_DADDR_OFF : IP4_SADDR_OFF;

		if (bpf_l4_csum_replace(skb, csum, old->words[3], new->words[3],
					BPF_F_PSEUDO_HDR | 4 | l4_csum_flags(p)))
			return -1;
		if (bpf_l3_csum_replace(skb, IP4_CSUM_OFF, old->words[3], new->words[3], 4))
			return -1;
		return bpf_skb_store_bytes(skb, off, &new->words[3], 4, 0);
	} else {
		__u32 off = dst ? IP6_DADDR_OFF : IP6_SADDR_OFF;
		__s64 diff = bpf_csum_diff((__be32 *)old->words, 16, (__be32 *)new->words, 16, 0);

		if (bpf_l4_csum_replace(skb, csum, 0, diff, BPF_F_PSEUDO_HDR | l4_csum_flags(p)))
			return -1;
		return bpf_skb_store_bytes(skb, off, new->words, 16, 0);
	}
}

static __always_inline int set_port(struct __sk_buff *skb, const struct pkt *p, int dst,
				    __be16 old, __be16 new)
{
	if (old == new)
		return 0;
	if (bpf_l4_csum_replace(skb, l4_csum_off(p), old, new, 2 | l4_csum_flags(p)))
		return -1;
	return bpf_skb_store_bytes(skb, p->l4_off + (dst ? 2 : 0), &new, 2, 0);
}

/* Rewrite the packet's tuple to s:sp -> d:dp. */
static __always_inline int rewrite(struct __sk_buff *skb, const struct pkt *p,
				   const struct sy_addr *s, __be16 sp, const struct sy_addr *d,
				   __be16 dp)
{
	if (set_addr(skb, p, 0, &p->t.saddr, s) || set_addr(skb, p, 1, &p->t.daddr, d) ||
	    set_port(skb, p, 0, p->t.sport, sp) || set_port(skb, p, 1, p->t.dport, dp))
		return -1;
	return 0;
}

/* ---- answers built by the program (reject, frag needed) ---- */

/* Turn the packet into an ICMP(v6) error about itself, sent back out of the device it came
 * in on, from the address it was sent to. mtu is the next-hop MTU for frag-needed / PTB. */
static SY_NOINLINE int answer_icmp(struct __sk_buff *skb, const struct pkt *p, __u8 type,
				       __u8 code, __u32 mtu)
{
	__u8 eth[ETH_HLEN], mac[ETH_ALEN];

	if (bpf_skb_load_bytes(skb, 0, eth, ETH_HLEN))
		return -1;
	__builtin_memcpy(mac, eth, ETH_ALEN);
	__builtin_memcpy(eth, eth + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(eth + ETH_ALEN, mac, ETH_ALEN);

	if (p->t.family == SY_AF_INET) {
		/* ICMP header (8) + quoted IPv4 header (20) + 8 bytes of the transport header */
		__u8 msg[36] = {};
		struct iphdr ip = {};
		__s64 sum;

		if (p->ip4_options)
			return -1;
		if (bpf_skb_load_bytes(skb, L3_OFF, msg + 8, 28))
			return -1;
		msg[0] = type;
		msg[1] = code;
		if (mtu) {
			msg[6] = (__u8)(mtu >> 8);
			msg[7] = (__u8)mtu;
		}
		sum = bpf_csum_diff(NULL, 0, (__be32 *)msg, sizeof(msg), 0);
		__u16 c = csum_fold(sum);
		__builtin_memcpy(msg + 2, &c, 2);

		ip.version = 4;
		ip.ihl = 5;
		ip.ttl = 64;
		ip.protocol = IPPROTO_ICMP;
		ip.tot_len = bpf_htons(sizeof(ip) + sizeof(msg));
		ip.saddr = p->t.daddr.words[3];
		ip.daddr = p->t.saddr.words[3];
		ip.check = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof(ip), 0));

		if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(ip) + sizeof(msg), 0) ||
		    bpf_skb_store_bytes(skb, 0, eth, ETH_HLEN, 0) ||
		    bpf_skb_store_bytes(skb, L3_OFF, &ip, sizeof(ip), 0) ||
		    bpf_skb_store_bytes(skb, L3_OFF + sizeof(ip), msg, sizeof(msg), 0))
			return -1;
	} else {
		/* ICMPv6 header (8) + quoted IPv6 header (40) + 8 bytes of the transport header */
		__u8 msg[56] = {};
		struct ipv6hdr ip6 = {};
		__be32 pseudo[10];
		__s64 sum;

		if (bpf_skb_load_bytes(skb, L3_OFF, msg + 8, 48))
			return -1;
		msg[0] = type;
		msg[1] = code;
		if (mtu) {
			msg[4] = (__u8)(mtu >> 24);
			msg[5] = (__u8)(mtu >> 16);
			msg[6] = (__u8)(mtu >> 8);
			msg[7] = (__u8)mtu;
		}
		ip6.version = 6;
		ip6.payload_len = bpf_htons(sizeof(msg));
		ip6.nexthdr = IPPROTO_ICMPV6_;
		ip6.hop_limit = 64;
		__builtin_memcpy(&ip6.saddr, p->t.daddr.bytes, 16);
		__builtin_memcpy(&ip6.daddr, p->t.saddr.bytes, 16);

		__builtin_memcpy(&pseudo[0], p->t.daddr.bytes, 16);
		__builtin_memcpy(&pseudo[4], p->t.saddr.bytes, 16);
		pseudo[8] = bpf_htonl(sizeof(msg));
		pseudo[9] = bpf_htonl(IPPROTO_ICMPV6_);
		sum = bpf_csum_diff(NULL, 0, pseudo, sizeof(pseudo), 0);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)msg, sizeof(msg), (__u32)sum);
		__u16 c = csum_fold(sum);
		__builtin_memcpy(msg + 2, &c, 2);

		if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(ip6) + sizeof(msg), 0) ||
		    bpf_skb_store_bytes(skb, 0, eth, ETH_HLEN, 0) ||
		    bpf_skb_store_bytes(skb, L3_OFF, &ip6, sizeof(ip6), 0) ||
		    bpf_skb_store_bytes(skb, L3_OFF + sizeof(ip6), msg, sizeof(msg), 0))
			return -1;
	}
	return 0;
}

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

/* Send the answer now in the packet back where the original came from. */
static __always_inline int send_back(struct __sk_buff *skb, __u32 reason)
{
	sy_count(reason, skb->len);
	return bpf_redirect(skb->ifindex, 0);
}

/* Tells the monitor (when on and sampled) what happened to p. */
static SY_NOINLINE void pkt_event(const struct pkt *p, __u32 reason, __u32 frontend_id,
				  __u32 backend_id, __u32 len)
{
	int is_drop = reason != SY_REASON_PKT_DNAT && reason != SY_REASON_PKT_DNAT_SNAT;
	struct sy_event *ev = sy_event_start(is_drop, reason, SY_PATH_PKT, frontend_id, backend_id);

	if (!ev)
		return;
	ev->len = len;
	ev->saddr = p->t.saddr;
	ev->daddr = p->t.daddr;
	ev->sport = p->t.sport;
	ev->dport = p->t.dport;
	ev->proto = p->t.proto;
	ev->family = p->t.family;
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline int drop(struct __sk_buff *skb, const struct pkt *p, __u32 reason)
{
	sy_count(reason, skb->len);
	pkt_event(p, reason, 0, 0, skb->len);
	return TC_ACT_SHOT;
}

/* ---- forwarding ---- */

struct route {
	int rc; /* BPF_FIB_LKUP_RET_* or negative error */
	__u32 ifindex;
	__u32 mtu;
	__u8 smac[ETH_ALEN];
	__u8 dmac[ETH_ALEN];
};

static __always_inline void route_lookup(struct __sk_buff *skb, const struct pkt *p,
					 const struct sy_addr *s, const struct sy_addr *d,
					 struct route *r)
{
	struct bpf_fib_lookup f = {};

	f.ifindex = skb->ingress_ifindex ? skb->ingress_ifindex : skb->ifindex;
	f.l4_protocol = p->t.proto;
	if (p->t.family == SY_AF_INET) {
		f.family = AF_INET_FIB;
		f.ipv4_src = s->words[3];
		f.ipv4_dst = d->words[3];
	} else {
		f.family = AF_INET6_FIB;
		__builtin_memcpy(f.ipv6_src, s->words, 16);
		__builtin_memcpy(f.ipv6_dst, d->words, 16);
	}
	r->rc = bpf_fib_lookup(skb, &f, sizeof(f), 0);
	r->ifindex = f.ifindex;
	r->mtu = f.mtu_result;
	__builtin_memcpy(r->smac, f.smac, ETH_ALEN);
	__builtin_memcpy(r->dmac, f.dmac, ETH_ALEN);
}

/* After the rewrite: send along the looked-up route, or let the stack route. */
static __always_inline int forward(struct __sk_buff *skb, const struct route *r)
{
	if (r->rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(skb, 0, r->dmac, ETH_ALEN, 0) ||
		    bpf_skb_store_bytes(skb, ETH_ALEN, r->smac, ETH_ALEN, 0))
			return TC_ACT_SHOT;
		return bpf_redirect(r->ifindex, 0);
	}
	if (r->rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(r->ifindex, NULL, 0, 0);
	return TC_ACT_OK;
}

/* Too big for the route: tell the sender (from the address it used) instead of dropping. */
static SY_NOINLINE int answer_too_big(struct __sk_buff *skb, const struct pkt *p, __u32 mtu)
{
	int err;

	if (p->t.family == SY_AF_INET)
		err = answer_icmp(skb, p, ICMP_DEST_UNREACH_, ICMP_FRAG_NEEDED_, mtu);
	else
		err = answer_icmp(skb, p, ICMP6_PKT_TOO_BIG_, 0, mtu);
	if (err)
		return drop(skb, p, SY_REASON_PKT_DROP_NO_ANSWER);
	return send_back(skb, SY_REASON_PKT_FRAG_NEEDED);
}

/* The new tuple of a translated packet and what to count. */
struct xlat {
	struct sy_addr s;
	struct sy_addr d;
	__be16 sp;
	__be16 dp;
	__u32 reason;
	__u32 ingress;
	__u32 mtu; /* out: next-hop MTU when NF_TOO_BIG is returned */
};

/* translate_and_forward(): the packet is too big for the route (x->mtu); the caller answers
 * with frag-needed / packet-too-big (kept out of the callee to bound the BPF stack). */
#define NF_TOO_BIG 102

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


static SY_NOINLINE int translate_and_forward(struct __sk_buff *skb, const struct pkt *p,
					      struct xlat *x)
{
	struct route r = {};
	const struct sy_addr *s = &x->s, *d = &x->d;
	__be16 sp = x->sp, dp = x->dp;
	__u32 reason = x->reason;
	int ingress = x->ingress;

	if (ingress) {
		route_lookup(skb, p, s, d, &r);
		if (r.rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && p->df) {
			x->mtu = r.mtu;
			return NF_TOO_BIG;
		}
	}
	if (rewrite(skb, p, s, sp, d, dp))
		return drop(skb, p, SY_REASON_PKT_DROP_REWRITE);
	sy_count(reason, skb->len);
	if (!ingress)
		return TC_ACT_OK;
	return forward(skb, &r);
}

/* ---- ICMP errors about translated flows ---- */

/* Rewrite the quoted packet's tuple (ports inside the ICMP checksum; IPv4 header checksum
 * of the quoted header; the IPv6 quoted addresses inside the ICMPv6 checksum). */
static __always_inline int set_inner(struct __sk_buff *skb, const struct pkt *p,
				     const struct sy_addr *s, __be16 sp, const struct sy_addr *d,
				     __be16 dp)
{
	__u32 icsum = p->l4_off + 2;
	__u32 off = p->inner_l3_off;

	if (p->t.family == SY_AF_INET) {
		/* Address change plus the matching quoted-header checksum change sum to zero in
		 * the ICMP checksum, so only the quoted header checksum is updated. */
		if (!addr_eq(&p->inner.saddr, s) &&
		    (bpf_l3_csum_replace(skb, off + 10, p->inner.saddr.words[3], s->words[3], 4) ||
		     bpf_skb_store_bytes(skb, off + 12, &s->words[3], 4, 0)))
			return -1;
		if (!addr_eq(&p->inner.daddr, d) &&
		    (bpf_l3_csum_replace(skb, off + 10, p->inner.daddr.words[3], d->words[3], 4) ||
		     bpf_skb_store_bytes(skb, off + 16, &d->words[3], 4, 0)))
			return -1;
	} else {
		if (!addr_eq(&p->inner.saddr, s)) {
			__s64 diff = bpf_csum_diff((__be32 *)p->inner.saddr.words, 16,
						   (__be32 *)s->words, 16, 0);
			if (bpf_l4_csum_replace(skb, icsum, 0, diff, 0) ||
			    bpf_skb_store_bytes(skb, off + 8, s->words, 16, 0))
				return -1;
		}
		if (!addr_eq(&p->inner.daddr, d)) {
			__s64 diff = bpf_csum_diff((__be32 *)p->inner.daddr.words, 16,
						   (__be32 *)d->words, 16, 0);
			if (bpf_l4_csum_replace(skb, icsum, 0, diff, 0) ||
			    bpf_skb_store_bytes(skb, off + 24, d->words, 16, 0))
				return -1;
		}
	}
	if (p->inner.sport != sp &&
	    (bpf_l4_csum_replace(skb, icsum, p->inner.sport, sp, 2) ||
	     bpf_skb_store_bytes(skb, p->inner_l4_off, &sp, 2, 0)))
		return -1;
	if (p->inner.dport != dp &&
	    (bpf_l4_csum_replace(skb, icsum, p->inner.dport, dp, 2) ||
	     bpf_skb_store_bytes(skb, p->inner_l4_off + 2, &dp, 2, 0)))
		return -1;
	return 0;
}

/* Outer addresses of an ICMP error: IPv4 header checksum, or the ICMPv6 pseudo-header. */
static __always_inline int set_outer(struct __sk_buff *skb, const struct pkt *p,
				     const struct sy_addr *s, const struct sy_addr *d)
{
	if (p->t.family == SY_AF_INET) {
		if (!addr_eq(&p->t.saddr, s) &&
		    (bpf_l3_csum_replace(skb, IP4_CSUM_OFF, p->t.saddr.words[3], s->words[3], 4) ||
		     bpf_skb_store_bytes(skb, IP4_SADDR_OFF, &s->words[3], 4, 0)))
			return -1;
		if (!addr_eq(&p->t.daddr, d) &&
		    (bpf_l3_csum_replace(skb, IP4_CSUM_OFF, p->t.daddr.words[3], d->words[3], 4) ||
		     bpf_skb_store_bytes(skb, IP4_DADDR_OFF, &d->words[3], 4, 0)))
			return -1;
		return 0;
	}
	if (!addr_eq(&p->t.saddr, s)) {
		__s64 diff = bpf_csum_diff((__be32 *)p->t.saddr.words, 16, (__be32 *)s->words, 16, 0);
		if (bpf_l4_csum_replace(skb, p->l4_off + 2, 0, diff, BPF_F_PSEUDO_HDR) ||
		    bpf_skb_store_bytes(skb, IP6_SADDR_OFF, s->words, 16, 0))
			return -1;
	}
	if (!addr_eq(&p->t.daddr, d)) {
		__s64 diff = bpf_csum_diff((__be32 *)p->t.daddr.words, 16, (__be32 *)d->words, 16, 0);
		if (bpf_l4_csum_replace(skb, p->l4_off + 2, 0, diff, BPF_F_PSEUDO_HDR) ||
		    bpf_skb_store_bytes(skb, IP6_DADDR_OFF, d->words, 16, 0))
			return -1;
	}
	return 0;
}

/*
 * An ICMP error whose quoted packet is one we translated:
 *  - quoted packet is what we sent to a backend (N:np -> B:bp, or C:cp -> B:bp from a local
 *    backend): sy_nat has the swapped quote; the client must see it about C:cp -> F:fp, from F.
 *  - quoted packet is a reply we sent to the client (F:fp -> C:cp): sy_ct has the swapped
 *    quote; the backend must see it about B:bp -> (C or N):port, sent to B.
 * This is what keeps path-MTU discovery working through the translation.
 */
static SY_NOINLINE int handle_icmp_error(struct __sk_buff *skb, struct pkt *p, int ingress)
{
	struct sy_ct_key swapped = {};
	struct sy_nat_entry *n;
	struct sy_ct_entry *e;
	struct sy_addr out_s, out_d, in_s, in_d;
	__be16 in_sp, in_dp;
	struct route r = {};

	swapped.saddr = p->inner.daddr;
	swapped.daddr = p->inner.saddr;
	swapped.sport = p->inner.dport;
	swapped.dport = p->inner.sport;
	swapped.proto = p->inner.proto;
	swapped.family = p->inner.family;

	n = bpf_map_lookup_elem(&sy_nat, &swapped);
	if (n) {
		in_s = n->orig.saddr;
		in_sp = n->orig.sport;
		in_d = n->orig.daddr;
		in_dp = n->orig.dport;
		out_s = n->orig.daddr;
		out_d = n->orig.saddr;
	} else {
		e = bpf_map_lookup_elem(&sy_ct, &swapped);
		if (!e)
			return TC_ACT_OK;
		in_s = e->nat_daddr;
		in_sp = e->nat_dport;
		in_d = e->nat_saddr;
		in_dp = e->nat_sport;
		out_s = (e->flags & SY_CT_F_SNAT) ? e->nat_saddr : p->t.saddr;
		out_d = e->nat_daddr;
	}
	if (ingress)
		route_lookup(skb, p, &out_s, &out_d, &r);
	if (set_inner(skb, p, &in_s, in_sp, &in_d, in_dp) || set_outer(skb, p, &out_s, &out_d))
		return drop(skb, p, SY_REASON_PKT_DROP_REWRITE);
	sy_count(SY_REASON_PKT_ICMP_REVNAT, skb->len);
	if (!ingress)
		return TC_ACT_OK;
	return forward(skb, &r);
}

/* ---- replies ---- */

/* A reply of a translated flow (backend -> client / node:port): make it frontend -> client. */
static __always_inline void reply_xlat(struct xlat *x, struct pkt *p,
				       const struct sy_nat_entry *n, int ingress, __u64 now,
				       __u32 len)
{
	struct sy_ct_entry *e = bpf_map_lookup_elem(&sy_ct, &n->orig);

	if (e) {
		ct_update(e, p, 1, now);
		/* Per-Service traffic counts both directions of a translated flow. */
		sy_count_frontend(e->frontend_id, 0, 1, len);
	}
	x->s = n->orig.daddr;
	x->sp = n->orig.dport;
	x->d = n->orig.saddr;
	x->dp = n->orig.sport;
	x->ingress = ingress;
	x->reason = SY_REASON_PKT_REVNAT;
}

/* Forward direction of a flow with conntrack entry e (a map value: copied). */
static __always_inline void ct_xlat(struct xlat *x, const struct sy_ct_entry *e, __u32 reason)
{
	x->s = e->nat_saddr;
	x->sp = e->nat_sport;
	x->d = e->nat_daddr;
	x->dp = e->nat_dport;
	x->ingress = 1;
	x->reason = reason;
}

/* Apply x; answer frag-needed / packet-too-big when the route is too small. */
static __always_inline int apply(struct __sk_buff *skb, const struct pkt *p, struct xlat *x)
{
	int rc = translate_and_forward(skb, p, x);

	if (rc == NF_TOO_BIG)
		return answer_too_big(skb, p, x->mtu);
	return rc;
}

/* ---- new flows ---- */

static SY_NOINLINE __u64 flow_hash(const struct sy_config *cfg, const struct sy_ct_key *t)
{
	/* crates/maglev FlowKey::to_bytes: saddr daddr sport dport proto, network order. */
	if (t->family == SY_AF_INET) {
		__u8 msg[13];

		__builtin_memcpy(msg, &t->saddr.words[3], 4);
		__builtin_memcpy(msg + 4, &t->daddr.words[3], 4);
		__builtin_memcpy(msg + 8, &t->sport, 2);
		__builtin_memcpy(msg + 10, &t->dport, 2);
		msg[12] = t->proto;
		return sy_siphash24(cfg->hash_k0, cfg->hash_k1, msg, 13);
	} else {
		__u8 msg[37];

		__builtin_memcpy(msg, t->saddr.bytes, 16);
		__builtin_memcpy(msg + 16, t->daddr.bytes, 16);
		__builtin_memcpy(msg + 32, &t->sport, 2);
		__builtin_memcpy(msg + 34, &t->dport, 2);
		msg[36] = t->proto;
		return sy_siphash24(cfg->hash_k0, cfg->hash_k1, msg, 37);
	}
}

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

/* Claim a source port on the SNAT address for the reply key (backend -> node:port). Probes
 * SY_SNAT_PROBES ports chosen at random (independent probes: with a fraction f of the range
 * in use, all probes fail with probability f^32, where linear probing would fail far earlier
 * on clusters of used ports). A port is free when no flow owns it; a closed TCP flow's port
 * within its SY_SNAT_TCP_HOLD_S hold is taken only when no probed port is free, the one idle
 * longest among those probed. */
static SY_NOINLINE int snat_claim(struct sy_ct_key *reply, const struct sy_nat_entry *val,
				      const struct sy_pkt_config *cfg, __u64 now)
{
	__u32 min = cfg->snat_port_min, max = cfg->snat_port_max;
	__u64 held_idle = 0;
	__be16 held = 0;
	__u32 span, i;

	if (min == 0 || max < min)
		return -1;
	span = max - min + 1;
	for (i = 0; i < SY_SNAT_PROBES; i++) {
		struct sy_nat_entry *cur;
		__u64 idle = 0;
		int owner;

		reply->dport = bpf_htons((__u16)(min + bpf_get_prandom_u32() % span));
		cur = bpf_map_lookup_elem(&sy_nat, reply);
		if (!cur) {
			if (bpf_map_update_elem(&sy_nat, reply, val, BPF_NOEXIST) == 0)
				return 0;
			continue;
		}
		owner = nat_entry_owner(reply, cur, cfg, now, &idle);
		if (owner == NAT_FREE && bpf_map_update_elem(&sy_nat, reply, val, BPF_EXIST) == 0)
			return 0;
		if (owner == NAT_HELD && (held == 0 || idle > held_idle)) {
			held = reply->dport;
			held_idle = idle;
		}
	}
	if (held == 0)
		return -1;
	reply->dport = held;
	return bpf_map_update_elem(&sy_nat, reply, val, BPF_EXIST) ? -1 : 0;
}

static __always_inline int ct_key_eq(const struct sy_ct_key *a, const struct sy_ct_key *b)
{
	return addr_eq(&a->saddr, &b->saddr) && addr_eq(&a->daddr, &b->daddr) &&
	       a->sport == b->sport && a->dport == b->dport && a->proto == b->proto &&
	       a->family == b->family;
}

/* A client reusing its tuple (a new SYN on a closed flow) to the same backend keeps the SNAT
 * port of the previous flow when that port is still its own: the backend then sees the same
 * tuple as before, on which its TIME_WAIT accepts the SYN (the client's sequence number and
 * timestamp grow on one tuple), as with nf_conntrack, where the tuple stays mapped. Returns 0
 * with reply->dport set, or -1 (claim another port). */
static __always_inline int snat_keep(struct sy_ct_key *reply, const struct sy_nat_entry *val,
				     const struct sy_ct_entry *old)
{
	struct sy_nat_entry *cur;

	if (!old || !(old->flags & SY_CT_F_SNAT) || !addr_eq(&old->nat_saddr, &reply->daddr) ||
	    !addr_eq(&old->nat_daddr, &reply->saddr) || old->nat_dport != reply->sport)
		return -1;
	reply->dport = old->nat_sport;
	cur = bpf_map_lookup_elem(&sy_nat, reply);
	if (!cur)
		return bpf_map_update_elem(&sy_nat, reply, val, BPF_NOEXIST) ? -1 : 0;
	return ct_key_eq(&cur->orig, &val->orig) ? 0 : -1;
}

/* handle_new_flow() results besides TC_ACT_*: the caller translates or rejects, so the deep
 * answer builders never stack on top of handle_new_flow (the combined BPF stack is 512 B). */
#define NF_TRANSLATE 100
#define NF_REJECT 101

/* A packet for a frontend without conntrack: choose a backend, claim a SNAT port, write
 * sy_nat and sy_ct. Returns NF_TRANSLATE, NF_REJECT or a TC verdict (pass / counted drop). */
static SY_NOINLINE int handle_new_flow(struct __sk_buff *skb, struct pkt *p,
					   const struct sy_pkt_config *pcfg, __u64 now,
					   struct sy_ct_entry *old)
{
	struct sy_frontend *fe;
	struct sy_backend *be;
	struct pick pick = {};
	struct sy_ct_entry e = {};
	struct sy_nat_entry nat = {};
	struct sy_ct_key reply = {};
	__u32 fe_flags;
	int err, snat;

	fe = lookup_frontend(&p->t.daddr, p->t.dport, p->t.proto, p->t.family, 0);
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

			err = cfg ? pick_maglev(fe, cfg, flow_hash(cfg, &p->t), &pick)
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
	if (fe_flags & SY_FE_AFFINITY)
		affinity_store(fe, p, now, &pick);

	/* A remote backend gets the node's address as source so its replies come back here;
	 * Local policy keeps the client address (the slots hold local backends only). A client
	 * that is its own backend (hairpin) must be SNATed too, or it would answer itself. */
	snat = !(fe_flags & SY_FE_LOCAL_ONLY) && !(be->flags & SY_BE_LOCAL);
	if (addr_eq(&be->addr, &p->t.saddr)) {
		snat = 1;
		e.flags |= SY_CT_F_HAIRPIN;
	}

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

/* Is the conntrack entry usable for this packet? Expired entries, a new SYN on a closing
 * flow and entries whose backend is gone (removed, or its id reused elsewhere) start over. */
static __always_inline int ct_usable(const struct sy_ct_entry *e, const struct pkt *p,
				     const struct sy_pkt_config *cfg, __u64 now)
{
	struct sy_backend *be;

	if (ct_expired(e, p->t.proto, cfg, now))
		return 0;
	if (p->t.proto == IPPROTO_TCP && e->state == SY_CT_CLOSING &&
	    (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
		return 0;
	be = bpf_map_lookup_elem(&sy_backends, &e->backend_id);
	return be && addr_eq(&be->addr, &e->nat_daddr) && be->port == e->nat_dport;
}

SEC("classifier")
int sy_nodeport_ingress(struct __sk_buff *skb)
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
	p = &s->p;
	x = &s->x;
	rc = parse(skb, p);
	if (rc == P_PASS)
		return TC_ACT_OK;
	if (rc == P_MALFORMED) {
		sy_count(SY_REASON_PKT_PASS_MALFORMED, skb->len);
		return TC_ACT_OK;
	}
	if (rc == P_FRAGMENT) {
		sy_count(SY_REASON_PKT_PASS_FRAGMENT, skb->len);
		return TC_ACT_OK;
	}
	if (p->icmp_error)
		return handle_icmp_error(skb, p, 1);

	now = bpf_ktime_get_ns();
	n = bpf_map_lookup_elem(&sy_nat, &p->t);
	if (n) {
		reply_xlat(x, p, n, 1, now, skb->len);
		return apply(skb, p, x);
	}

	cfg = pkt_config();
	e = bpf_map_lookup_elem(&sy_ct, &p->t);
	if (e && ct_usable(e, p, cfg, now)) {
		ct_update(e, p, 0, now);
		sy_count_frontend(e->frontend_id, 0, 1, skb->len);
		ct_xlat(x, e, SY_REASON_PKT_CT_HIT);
		return apply(skb, p, x);
	}
	rc = handle_new_flow(skb, p, cfg, now, e);
	if (rc == NF_REJECT)
		return reject(skb, p);
	if (rc != NF_TRANSLATE)
		return rc;
	e = bpf_map_lookup_elem(&sy_ct, &p->t);
	if (!e)
		return drop(skb, p, SY_REASON_PKT_DROP_CT_UPDATE);
	sy_count_frontend(e->frontend_id, 1, 1, skb->len);
	pkt_event(p, (e->flags & SY_CT_F_SNAT) ? SY_REASON_PKT_DNAT_SNAT : SY_REASON_PKT_DNAT,
		  e->frontend_id, e->backend_id, skb->len);
	ct_xlat(x, e, (e->flags & SY_CT_F_SNAT) ? SY_REASON_PKT_DNAT_SNAT : SY_REASON_PKT_DNAT);
	return apply(skb, p, x);
}

SEC("classifier")
int sy_nodeport_egress(struct __sk_buff *skb)
{
	struct scratch *s = scratch(1);
	struct sy_nat_entry *n;

	if (!s || parse(skb, &s->p) != P_OK)
		return TC_ACT_OK;
	if (s->p.icmp_error)
		return handle_icmp_error(skb, &s->p, 0);
	n = bpf_map_lookup_elem(&sy_nat, &s->p.t);
	if (!n)
		return TC_ACT_OK;
	reply_xlat(&s->x, &s->p, n, 0, bpf_ktime_get_ns(), skb->len);
	return translate_and_forward(skb, &s->p, &s->x);
}
