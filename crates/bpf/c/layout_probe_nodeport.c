/* Host-compiled by build.rs: layout and constants of the per-packet section of switchyard.h,
 * as Rust, for tests/layout_pkt.rs. Also prints the flow hash of a few 5-tuples computed by
 * sy_flow_hash() (lib/siphash.h, what nodeport.bpf.c uses), so Rust can compare with
 * crates/maglev's FlowKey::hash. */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "switchyard.h"
#include "lib/siphash.h"

/* Prints one (saddr, daddr, sport, dport, proto, family, sy_flow_hash, the VIP's prefix
 * state v0..v3 as sy_flow_prefix_of makes it, the hash from that prefix) row, ports in host
 * order. */
static void flow_row(const struct sy_config *cfg, const __u8 *s, const __u8 *d, __u16 sport,
		     __u16 dport, __u8 proto, __u8 family)
{
	struct sy_flow_prefix p, stale;
	struct sy_ct_key t;
	int i;

	memset(&t, 0, sizeof(t));
	memcpy(t.saddr.bytes, s, 16);
	memcpy(t.daddr.bytes, d, 16);
	t.sport = htons(sport);
	t.dport = htons(dport);
	t.proto = proto;
	t.family = family;
	sy_flow_prefix_of(cfg->hash_k0, cfg->hash_k1, &t, &p);
	/* A prefix made under another key: the hash must not use it. */
	sy_flow_prefix_of(cfg->hash_k0 ^ 1, cfg->hash_k1, &t, &stale);
	printf("    ([");
	for (i = 0; i < 16; i++)
		printf("%u, ", s[i]);
	printf("], [");
	for (i = 0; i < 16; i++)
		printf("%u, ", d[i]);
	printf("], %u, %u, %u, %u, 0x%016llx, [", sport, dport, proto, family,
	       (unsigned long long)sy_flow_hash(cfg, &t));
	for (i = 0; i < 4; i++)
		printf("0x%016llx, ", (unsigned long long)p.v[i]);
	printf("], 0x%016llx, 0x%016llx),\n",
	       (unsigned long long)sy_flow_hash_prefixed(cfg->hash_k0, cfg->hash_k1, &p, &t),
	       (unsigned long long)sy_flow_hash_prefixed(cfg->hash_k0, cfg->hash_k1, &stale, &t));
}

#define SIZE(t) printf("    (\"%s\", %zu, %zu),\n", #t, sizeof(struct t), _Alignof(struct t))
#define FIELD(t, f) printf("    (\"%s.%s\", %zu),\n", #t, #f, offsetof(struct t, f))
#define CONST(c) printf("    (\"%s\", %llu),\n", #c, (unsigned long long)(c))

int main(void)
{
	printf("/// (struct, size, align).\npub const C_PKT_SIZES: &[(&str, usize, usize)] = &[\n");
	SIZE(sy_ct_key);
	SIZE(sy_ct_entry);
	SIZE(sy_nat_entry);
	SIZE(sy_src_range_key);
	SIZE(sy_pkt_config);
	SIZE(sy_xdp_dev);
	SIZE(sy_gue_dsr);
	printf("];\n\n/// (struct.field, offset).\npub const C_PKT_OFFSETS: &[(&str, usize)] = &[\n");
	FIELD(sy_ct_key, saddr);
	FIELD(sy_ct_key, daddr);
	FIELD(sy_ct_key, sport);
	FIELD(sy_ct_key, dport);
	FIELD(sy_ct_key, proto);
	FIELD(sy_ct_key, family);
	FIELD(sy_ct_key, pad);
	FIELD(sy_ct_entry, nat_saddr);
	FIELD(sy_ct_entry, nat_daddr);
	FIELD(sy_ct_entry, nat_sport);
	FIELD(sy_ct_entry, nat_dport);
	FIELD(sy_ct_entry, backend_id);
	FIELD(sy_ct_entry, frontend_id);
	FIELD(sy_ct_entry, state);
	FIELD(sy_ct_entry, flags);
	FIELD(sy_ct_entry, pad);
	FIELD(sy_ct_entry, last_seen_ns);
	FIELD(sy_nat_entry, orig);
	FIELD(sy_src_range_key, prefixlen);
	FIELD(sy_src_range_key, frontend_id);
	FIELD(sy_src_range_key, addr);
	FIELD(sy_pkt_config, snat_addr4);
	FIELD(sy_pkt_config, snat_addr6);
	FIELD(sy_pkt_config, snat_port_min);
	FIELD(sy_pkt_config, snat_port_max);
	FIELD(sy_pkt_config, flags);
	FIELD(sy_pkt_config, timeout_tcp_syn_s);
	FIELD(sy_pkt_config, timeout_tcp_established_s);
	FIELD(sy_pkt_config, timeout_tcp_closing_s);
	FIELD(sy_pkt_config, timeout_udp_s);
	FIELD(sy_pkt_config, timeout_other_s);
	FIELD(sy_pkt_config, timeout_unreplied_s);
	FIELD(sy_pkt_config, dsr_port);
	FIELD(sy_pkt_config, pad);
	FIELD(sy_gue_dsr, kind);
	FIELD(sy_gue_dsr, family);
	FIELD(sy_gue_dsr, port);
	FIELD(sy_xdp_dev, mac);
	FIELD(sy_xdp_dev, flags);
	printf("];\n\n/// (constant, value).\npub const C_PKT_CONSTANTS: &[(&str, u64)] = &[\n");
	CONST(SY_CT_SYN_SENT);
	CONST(SY_CT_ESTABLISHED);
	CONST(SY_CT_CLOSING);
	CONST(SY_CT_F_SNAT);
	CONST(SY_CT_F_REPLY_SEEN);
	CONST(SY_CT_F_HAIRPIN);
	CONST(SY_CT_F_DSR);
	CONST(SY_CT_F_RESET);
	CONST(SY_SNAT_RESET_QUIET_MS);
	CONST(SY_PKT_F_DSR);
	CONST(SY_GUE_DSR_KIND);
	CONST(SY_GUE_DSR_HLEN4);
	CONST(SY_GUE_DSR_HLEN6);
	CONST(SY_DEFAULT_DSR_NODES);
	CONST(SY_SNAT_PROBES);
	CONST(SY_SNAT_CLAIMS);
	CONST(SY_SNAT_TCP_HOLD_S);
	CONST(SY_XDP_DEVS_MAX);
	CONST(SY_NP_ROUTE_TTL_MS);
	CONST(SY_DEFAULT_CT);
	CONST(SY_DEFAULT_NAT);
	CONST(SY_DEFAULT_SRC_RANGES);
	CONST(SY_CT_TIMEOUT_TCP_SYN_S);
	CONST(SY_CT_TIMEOUT_TCP_ESTABLISHED_S);
	CONST(SY_CT_TIMEOUT_TCP_CLOSING_S);
	CONST(SY_CT_TIMEOUT_UDP_S);
	CONST(SY_CT_TIMEOUT_OTHER_S);
	CONST(SY_CT_TIMEOUT_UNREPLIED_S);
	CONST(SY_REASON_PKT_DNAT);
	CONST(SY_REASON_PKT_DNAT_SNAT);
	CONST(SY_REASON_PKT_CT_HIT);
	CONST(SY_REASON_PKT_REVNAT);
	CONST(SY_REASON_PKT_ICMP_REVNAT);
	CONST(SY_REASON_PKT_REJECT_RST);
	CONST(SY_REASON_PKT_REJECT_ICMP);
	CONST(SY_REASON_PKT_DROP_NO_LOCAL_BACKEND);
	CONST(SY_REASON_PKT_DROP_SOURCE_RANGE);
	CONST(SY_REASON_PKT_DROP_SNAT_EXHAUSTED);
	CONST(SY_REASON_PKT_DROP_SNAT_NO_ADDR);
	CONST(SY_REASON_PKT_PASS_MALFORMED);
	CONST(SY_REASON_PKT_PASS_FRAGMENT);
	CONST(SY_REASON_PKT_DROP_CT_UPDATE);
	CONST(SY_REASON_PKT_DROP_REWRITE);
	CONST(SY_REASON_PKT_FRAG_NEEDED);
	CONST(SY_REASON_PKT_DROP_NO_ANSWER);
	CONST(SY_REASON_PKT_AFFINITY);
	CONST(SY_REASON_PKT_DROP_DECAP_UNHANDLED);
	CONST(SY_REASON_PKT_DROP_NOT_SYN);
	CONST(SY_REASON_PKT_FRAG_XLAT);
	CONST(SY_REASON_PKT_PASS_VLAN);
	CONST(SY_REASON_PKT_PASS_IPV6_EXT);
	CONST(SY_REASON_PKT_PASS_OTHERHOST);
	CONST(SY_REASON_PKT_DNAT_DSR);
	CONST(SY_REASON_PKT_DROP_DSR_NO_NODE);
	CONST(SY_REASON_PKT_DROP_DSR_ENCAP);
	CONST(SY_REASON_PKT_DROP_DSR_TOO_BIG);
	CONST(SY_REASON_PKT_XDP_TO_TC);
	CONST(SY_REASON_PKT_XDP_FORWARDED);
	CONST(SY_REASON_PKT_CT_CREATED);
	printf("];\n\n");

	/* Golden flow hashes under key bytes 0..16: IPv4 (as IPv4-mapped addresses) and IPv6. */
	struct sy_config cfg = { .hash_k0 = 0x0706050403020100ull, .hash_k1 = 0x0f0e0d0c0b0a0908ull };
	const __u8 v4a[16] = { [10] = 0xff, [11] = 0xff, 192, 0, 2, 1 };
	const __u8 v4b[16] = { [10] = 0xff, [11] = 0xff, 10, 96, 0, 10 };
	const __u8 v6a[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
	const __u8 v6b[16] = { 0xfd, 0x00, [7] = 0x96, [15] = 0x10 };
	printf("/// (saddr, daddr, sport, dport, proto, family, sy_flow_hash, the VIP's prefix state,\n");
	printf("/// sy_flow_hash_prefixed from it, sy_flow_hash_prefixed from a prefix of another key).\n");
	printf("pub type CFlowHash = ([u8; 16], [u8; 16], u16, u16, u8, u8, u64, [u64; 4], u64, u64);\n");
	printf("/// Flows hashed by the C `sy_flow_hash`, to check the Rust mirror against (key bytes 0..16).\n");
	printf("pub const C_FLOW_HASH: &[CFlowHash] = &[\n");
	flow_row(&cfg, v4a, v4b, 40000, 80, 6, SY_AF_INET);
	flow_row(&cfg, v4b, v4a, 53, 1, 17, SY_AF_INET);
	flow_row(&cfg, v4a, v4b, 0, 65535, 6, SY_AF_INET);
	flow_row(&cfg, v6a, v6b, 40000, 443, 6, SY_AF_INET6);
	flow_row(&cfg, v6b, v6a, 65535, 0, 17, SY_AF_INET6);
	printf("];\n");

	/* docs/maglev.md's golden flows under the default seed ("switchyard:seed0"); crates/maglev
	 * tests/golden.rs lists the same values. */
	struct sy_config dflt = { .hash_k0 = 0x6179686374697773ull, .hash_k1 = 0x30646565733a6472ull };
	const __u8 g4s[16] = { [10] = 0xff, [11] = 0xff, 192, 0, 2, 10 };
	const __u8 g4d[16] = { [10] = 0xff, [11] = 0xff, 198, 51, 100, 1 };
	const __u8 g6s[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x10 };
	const __u8 g6d[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
	printf("/// docs/maglev.md's golden flows under the default seed, hashed by the C `sy_flow_hash`.\n");
	printf("pub const C_GOLDEN_FLOW_HASH: &[CFlowHash] = &[\n");
	flow_row(&dflt, g4s, g4d, 40000, 443, 6, SY_AF_INET);
	flow_row(&dflt, g6s, g6d, 40000, 53, 17, SY_AF_INET6);
	printf("];\n");
	return 0;
}
