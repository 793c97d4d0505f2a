/* Host-compiled by build.rs: prints the layout of every shared struct and the value of every
 * shared constant in switchyard.h as Rust, so tests/layout.rs can compare the #[repr(C)]
 * mirrors against what the C compiler actually does, and golden values of the hash in
 * lib/siphash.h. */
#include <stddef.h>
#include <stdio.h>
#include "switchyard.h"
#include "lib/siphash.h"

#define SIZE(t) printf("    (\"%s\", %zu, %zu),\n", #t, sizeof(struct t), _Alignof(struct t))
#define FIELD(t, f)                                                                       \
	printf("    (\"%s.%s\", %zu, %zu),\n", #t, #f, offsetof(struct t, f),                    \
	       sizeof(((struct t *)0)->f))
#define CONST(c) printf("    (\"%s\", %llu),\n", #c, (unsigned long long)(c))

int main(void)
{
	printf("/// (struct, size, align) as the C compiler lays them out.\n");
	printf("pub const C_SIZES: &[(&str, usize, usize)] = &[\n");
	SIZE(sy_addr);
	SIZE(sy_frontend_key);
	SIZE(sy_frontend);
	SIZE(sy_slot_key);
	SIZE(sy_backend);
	SIZE(sy_sock_revnat_key);
	SIZE(sy_sock_revnat);
	SIZE(sy_affinity_key);
	SIZE(sy_affinity);
	SIZE(sy_sock_sticky_key);
	SIZE(sy_node_addr_key);
	SIZE(sy_counter);
	SIZE(sy_fe_counter);
	SIZE(sy_config);
	SIZE(sy_monitor_config);
	SIZE(sy_event);
	printf("];\n\n/// (struct.field, offset, size).\npub const C_OFFSETS: &[(&str, usize, usize)] = &[\n");
	FIELD(sy_frontend_key, addr);
	FIELD(sy_frontend_key, port);
	FIELD(sy_frontend_key, proto);
	FIELD(sy_frontend_key, family);
	FIELD(sy_frontend_key, scope);
	FIELD(sy_frontend_key, pad);
	FIELD(sy_frontend, id);
	FIELD(sy_frontend, flags);
	FIELD(sy_frontend, backend_count);
	FIELD(sy_frontend, affinity_timeout_s);
	FIELD(sy_slot_key, frontend_id);
	FIELD(sy_slot_key, slot);
	FIELD(sy_backend, addr);
	FIELD(sy_backend, port);
	FIELD(sy_backend, family);
	FIELD(sy_backend, flags);
	FIELD(sy_backend, tunnel_id);
	FIELD(sy_sock_revnat_key, cookie);
	FIELD(sy_sock_revnat_key, addr);
	FIELD(sy_sock_revnat_key, port);
	FIELD(sy_sock_revnat_key, family);
	FIELD(sy_sock_revnat_key, pad);
	FIELD(sy_sock_revnat, addr);
	FIELD(sy_sock_revnat, port);
	FIELD(sy_sock_revnat, family);
	FIELD(sy_sock_revnat, pad);
	FIELD(sy_sock_revnat, frontend_id);
	FIELD(sy_affinity_key, client);
	FIELD(sy_affinity_key, frontend_id);
	FIELD(sy_affinity_key, family);
	FIELD(sy_affinity_key, pad);
	FIELD(sy_affinity, backend_id);
	FIELD(sy_affinity, slot);
	FIELD(sy_affinity, last_used_ns);
	FIELD(sy_sock_sticky_key, cookie);
	FIELD(sy_sock_sticky_key, frontend_id);
	FIELD(sy_sock_sticky_key, pad);
	FIELD(sy_node_addr_key, addr);
	FIELD(sy_node_addr_key, family);
	FIELD(sy_node_addr_key, pad);
	FIELD(sy_counter, packets);
	FIELD(sy_counter, bytes);
	FIELD(sy_fe_counter, connections);
	FIELD(sy_fe_counter, packets);
	FIELD(sy_fe_counter, bytes);
	FIELD(sy_config, maglev_table_size);
	FIELD(sy_config, flags);
	FIELD(sy_config, hash_k0);
	FIELD(sy_config, hash_k1);
	FIELD(sy_config, node_netns_cookie);
	FIELD(sy_monitor_config, enabled);
	FIELD(sy_monitor_config, sample_every);
	FIELD(sy_monitor_config, drop_sample_every);
	FIELD(sy_monitor_config, pad);
	FIELD(sy_event, ts_ns);
	FIELD(sy_event, cookie);
	FIELD(sy_event, reason);
	FIELD(sy_event, frontend_id);
	FIELD(sy_event, backend_id);
	FIELD(sy_event, len);
	FIELD(sy_event, saddr);
	FIELD(sy_event, daddr);
	FIELD(sy_event, sport);
	FIELD(sy_event, dport);
	FIELD(sy_event, proto);
	FIELD(sy_event, family);
	FIELD(sy_event, path);
	FIELD(sy_event, pad);
	printf("];\n\n/// (constant, value).\npub const C_CONSTANTS: &[(&str, u64)] = &[\n");
	CONST(SY_AF_INET);
	CONST(SY_AF_INET6);
	CONST(SY_AF_NETNS_COOKIE);
	CONST(SY_SCOPE_DEFAULT);
	CONST(SY_SCOPE_INTERNAL);
	CONST(SY_FE_AFFINITY);
	CONST(SY_FE_MAGLEV);
	CONST(SY_FE_REJECT_EMPTY);
	CONST(SY_FE_LOCAL_ONLY);
	CONST(SY_FE_TERMINATING_FALLBACK);
	CONST(SY_FE_SPLIT_SCOPE);
	CONST(SY_FE_NODEPORT);
	CONST(SY_FE_SOURCE_RANGES);
	CONST(SY_BE_TERMINATING);
	CONST(SY_BE_LOCAL);
	CONST(SY_BE_ENCAP);
	CONST(SY_SLOT_NONE);
	CONST(SY_MAGLEV_DEFAULT_TABLE_SIZE);
	CONST(SY_PATH_SOCK);
	CONST(SY_PATH_PKT);
	CONST(SY_PATH_DIR);
	CONST(SY_EVENT_NO_SLOT);
	CONST(SY_DEFAULT_EVENTS_BYTES);
	CONST(SY_DEFAULT_FRONTENDS);
	CONST(SY_DEFAULT_SLOTS);
	CONST(SY_DEFAULT_BACKENDS);
	CONST(SY_DEFAULT_SOCK_REVNAT);
	CONST(SY_DEFAULT_AFFINITY);
	CONST(SY_DEFAULT_STICKY);
	CONST(SY_DEFAULT_MAGLEV);
	CONST(SY_DEFAULT_NODE_ADDRS);
	CONST(SY_DEFAULT_FE_COUNTERS);
	CONST(SY_REASON_NOT_SERVICE);
	CONST(SY_REASON_TRANSLATED_RANDOM);
	CONST(SY_REASON_TRANSLATED_MAGLEV);
	CONST(SY_REASON_TRANSLATED_AFFINITY);
	CONST(SY_REASON_TRANSLATED_STICKY);
	CONST(SY_REASON_REJECT_NO_BACKEND);
	CONST(SY_REASON_DROP_NO_BACKEND);
	CONST(SY_REASON_ERR_SLOT_MISSING);
	CONST(SY_REASON_ERR_BACKEND_MISSING);
	CONST(SY_REASON_ERR_MAGLEV_MISSING);
	CONST(SY_REASON_ERR_REVNAT_UPDATE);
	CONST(SY_REASON_REVNAT_RECVMSG);
	CONST(SY_REASON_REVNAT_GETPEERNAME);
	CONST(SY_REASON_SOCK_RELEASED);
	CONST(SY_REASON_DROP_SOURCE_RANGE_SOCK);
	CONST(SY_REASON_REJECT_SOURCE_RANGE);
	CONST(SY_REASON_MAX);
	printf("];\n\n");
	/* Golden SipHash values: key bytes 0..15, message bytes 0..len-1 (the reference vectors'
	 * setup), and the socket hash of a few cookies under the same key. */
	__u64 k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
	__u8 msg[64];
	for (int i = 0; i < 64; i++)
		msg[i] = (__u8)i;
	printf("/// (message length, SipHash-2-4 of bytes 0..len under key bytes 0..16).\n");
	printf("pub const C_SIPHASH: &[(usize, u64)] = &[\n");
	for (__u32 len = 0; len <= 40; len++)
		printf("    (%u, 0x%016llx),\n", len, (unsigned long long)sy_siphash24(k0, k1, msg, len));
	printf("];\n\n/// (socket cookie, sy_sock_hash) under key bytes 0..16.\n");
	printf("pub const C_SOCK_HASH: &[(u64, u64)] = &[\n");
	struct sy_config cfg = { .hash_k0 = k0, .hash_k1 = k1 };
	__u64 cookies[] = { 0, 1, 4096, 0x0123456789abcdefull, ~0ull };
	for (unsigned i = 0; i < sizeof(cookies) / sizeof(cookies[0]); i++)
		printf("    (0x%016llx, 0x%016llx),\n", (unsigned long long)cookies[i],
		       (unsigned long long)sy_sock_hash(&cfg, cookies[i]));
	printf("];\n");
	return 0;
}
