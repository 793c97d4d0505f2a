/* Host-compiled by build.rs: layout and constants of the director section of switchyard.h,
 * as Rust, for tests/layout_director.rs. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "switchyard.h"

#define SIZE(t) printf("    (\"%s\", %zu, %zu),\n", #t, sizeof(struct t), _Alignof(struct t))
#define FIELD(t, f) printf("    (\"%s.%s\", %zu),\n", #t, #f, offsetof(struct t, f))
#define CONST(c) printf("    (\"%s\", %llu),\n", #c, (unsigned long long)(c))

/* Prints the home slot of ADDR (the address as text, its bytes) port/proto under `shift`. */
static void slot_of(const char *text, const unsigned char *bytes, unsigned family,
		    unsigned port, unsigned proto, unsigned shift)
{
	struct sy_frontend_key k;
	__u32 words[6];

	memset(&k, 0, sizeof(k));
	memcpy(k.addr.bytes, bytes, 16);
	k.port = (__be16)((port >> 8) | ((port & 0xff) << 8)); /* network order (host LE) */
	k.proto = (__u8)proto;
	k.family = (__u8)family;
	memcpy(words, &k, sizeof(words)); /* as the program loads them */
	printf("    (\"%s\", %u, %u, %u, %u),\n", text, port, proto, shift,
	       sy_dir_vip_slot_of((const struct sy_frontend_key *)words, shift));
}

int main(void)
{
	printf("/// (struct, size, align).\npub const C_DIR_SIZES: &[(&str, usize, usize)] = &[\n");
	SIZE(sy_gue_hdr);
	SIZE(sy_gue_prev);
	SIZE(sy_flow_prefix);
	SIZE(sy_dir_vip);
	SIZE(sy_dir_vip_slot);
	SIZE(sy_dir_node);
	SIZE(sy_dir_config);
	SIZE(sy_dir_counter);
	SIZE(sy_dir_table_node_key);
	SIZE(sy_dir_table_node);
	SIZE(sy_decap_config);
	SIZE(sy_dir_health_key);
	SIZE(sy_dir_health);
	printf("];\n\n/// (struct.field, offset).\npub const C_DIR_OFFSETS: &[(&str, usize)] = &[\n");
	FIELD(sy_gue_hdr, vc_hlen);
	FIELD(sy_gue_hdr, proto);
	FIELD(sy_gue_hdr, flags);
	FIELD(sy_gue_prev, kind);
	FIELD(sy_gue_prev, hops);
	FIELD(sy_gue_prev, family);
	FIELD(sy_gue_prev, reserved);
	FIELD(sy_dir_vip, id);
	FIELD(sy_dir_vip, table_id);
	FIELD(sy_dir_vip, hash);
	FIELD(sy_flow_prefix, k0);
	FIELD(sy_flow_prefix, k1);
	FIELD(sy_flow_prefix, v);
	FIELD(sy_dir_vip_slot, key);
	FIELD(sy_dir_vip_slot, vip);
	FIELD(sy_dir_vip_slot, flags);
	FIELD(sy_dir_vip_slot, pad);
	FIELD(sy_dir_node, addr);
	FIELD(sy_dir_node, family);
	FIELD(sy_dir_node, pad);
	FIELD(sy_dir_node, flags);
	FIELD(sy_dir_config, source4);
	FIELD(sy_dir_config, source6);
	FIELD(sy_dir_config, hash_k0);
	FIELD(sy_dir_config, hash_k1);
	FIELD(sy_dir_config, table_size);
	FIELD(sy_dir_config, gue_port);
	FIELD(sy_dir_config, encap);
	FIELD(sy_dir_config, pad);
	FIELD(sy_dir_config, vip_slot_shift);
	FIELD(sy_dir_config, reserved);
	FIELD(sy_dir_counter, packets);
	FIELD(sy_dir_counter, bytes);
	FIELD(sy_dir_table_node_key, table_id);
	FIELD(sy_dir_table_node_key, node_id);
	FIELD(sy_dir_table_node, weight);
	FIELD(sy_dir_table_node, name);
	FIELD(sy_dir_health_key, addr);
	FIELD(sy_dir_health_key, port);
	FIELD(sy_dir_health_key, family);
	FIELD(sy_dir_health, state);
	FIELD(sy_dir_health, failures);
	FIELD(sy_dir_health, successes);
	FIELD(sy_dir_health, last);
	FIELD(sy_dir_health, since_ms);
	FIELD(sy_dir_health, name);
	FIELD(sy_decap_config, gue_port);
	FIELD(sy_decap_config, pad);
	FIELD(sy_decap_config, flags);
	printf("];\n\n/// (constant, value).\npub const C_DIR_CONSTS: &[(&str, u64)] = &[\n");
	CONST(SY_GUE_PORT_DEFAULT);
	CONST(SY_ENCAP_GUE);
	CONST(SY_ENCAP_FOU);
	CONST(SY_ENCAP_IPIP);
	CONST(SY_ENCAP_SPORT_BASE);
	CONST(SY_ENCAP_SPORT_MASK);
	CONST(SY_DIR_ENCAP_GUE);
	CONST(SY_DIR_ENCAP_FOU);
	CONST(SY_DIR_ENCAP_IPIP);
	CONST(SY_DIR_ICMP_TO_NODE);
	CONST(SY_DIR_FRAG_NEEDED);
	CONST(SY_DIR_DROP_NO_NODE);
	CONST(SY_DIR_DROP_TABLE_MISSING);
	CONST(SY_DIR_DROP_NODE_MISSING);
	CONST(SY_DIR_PASS_MALFORMED);
	CONST(SY_DIR_PASS_FRAGMENT);
	CONST(SY_DIR_DROP_NO_SOURCE);
	CONST(SY_DIR_DROP_NO_ROUTE);
	CONST(SY_DIR_DROP_RESIZE);
	CONST(SY_DIR_DROP_NO_ANSWER);
	CONST(SY_DIR_DROP_NO_CONFIG);
	CONST(SY_DIR_SECOND_CHANCE);
	CONST(SY_DIR_PROBE_ENCAP);
	CONST(SY_DIR_DROP_PROBE);
	CONST(SY_DIR_PROBE_MARK);
	CONST(SY_DIR_HEALTH_UP);
	CONST(SY_DIR_HEALTH_DOWN);
	CONST(SY_DIR_HEALTH_DRAINING);
	CONST(SY_GUE_PREV_KIND);
	CONST(SY_GUE_PREV_HLEN4);
	CONST(SY_GUE_PREV_HLEN6);
	CONST(SY_DIR_REASON_MAX);
	CONST(SY_DIR_NODE_NAME_LEN);
	CONST(SY_DECAP_GUE);
	CONST(SY_DECAP_FOU);
	CONST(SY_DECAP_IPIP);
	CONST(SY_DECAP_DROP_NOT_DIRECTOR);
	CONST(SY_DECAP_DROP_MALFORMED);
	CONST(SY_DECAP_DROP_ADJUST);
	CONST(SY_DECAP_SC_KEPT);
	CONST(SY_DECAP_SC_FORWARDED);
	CONST(SY_DECAP_SC_NO_ROUTE);
	CONST(SY_DECAP_GRO_MERGED);
	CONST(SY_DECAP_SC_RETURNED);
	CONST(SY_DECAP_SC_NEW_FLOW);
	CONST(SY_DECAP_DSR);
	CONST(SY_DECAP_DROP_NOT_NODE);
	CONST(SY_DECAP_DROP_DSR_MALFORMED);
	CONST(SY_DECAP_DROP_DSR_CT);
	CONST(SY_DECAP_SRC_DIRECTOR);
	CONST(SY_DECAP_SRC_NODE);
	CONST(SY_DECAP_REASON_MAX);
	CONST(SY_DIR_SLOT_OVERFLOW);
	printf("];\n\n/// (address, port, protocol, shift, home slot): sy_dir_vip_slot_of.\n"
	       "pub const C_DIR_VIP_SLOTS: &[(&str, u16, u8, u32, u32)] = &[\n");
	{
		static const unsigned char v4a[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
						      10, 96, 0, 1};
		static const unsigned char v4b[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
						      198, 51, 100, 7};
		static const unsigned char v6a[16] = {0xfd, 0, 0, 0x96, 0, 0, 0, 0,
						      0, 0, 0, 0, 0, 0x70, 0, 1};
		unsigned shift;

		for (shift = 18; shift <= 31; shift += 13) {
			slot_of("10.96.0.1", v4a, 2, 80, 6, shift);
			slot_of("10.96.0.1", v4a, 2, 443, 6, shift);
			slot_of("10.96.0.1", v4a, 2, 80, 17, shift);
			slot_of("198.51.100.7", v4b, 2, 53, 17, shift);
			slot_of("fd00:96::70:1", v6a, 10, 80, 6, shift);
			slot_of("fd00:96::70:1", v6a, 10, 8443, 132, shift);
		}
	}
	printf("];\n");
	return 0;
}
