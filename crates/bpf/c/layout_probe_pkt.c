/* Host-compiled by build.rs: layout and constants of the per-packet section of switchyard.h,
 * as Rust, for tests/layout_pkt.rs. Also prints the flow hash of a few 5-tuples computed the
 * way nodeport.bpf.c does (FlowKey::to_bytes layout), so Rust can compare with crates/maglev. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "switchyard.h"

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
	FIELD(sy_pkt_config, pad);
	printf("];\n\n/// (constant, value).\npub const C_PKT_CONSTANTS: &[(&str, u64)] = &[\n");
	CONST(SY_CT_SYN_SENT);
	CONST(SY_CT_ESTABLISHED);
	CONST(SY_CT_CLOSING);
	CONST(SY_CT_F_SNAT);
	CONST(SY_CT_F_REPLY_SEEN);
	CONST(SY_CT_F_HAIRPIN);
	CONST(SY_SNAT_PROBES);
	CONST(SY_SNAT_TCP_HOLD_S);
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
	printf("];\n");
	return 0;
}
