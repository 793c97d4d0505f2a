/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ct_maps.h - the per-packet path's conntrack (sy_ct), reverse NAT (sy_nat) and settings
 * (sy_pkt_config) with the entry timeouts: shared by the per-packet object and the
 * decapsulation, which asks whether this node holds a flow (the second chance) and writes the
 * entries of a DSR flow. Pinned by name, so both use the same maps (the agent loads the
 * per-packet object, with the configured sizes, first).
 */
#ifndef SY_LIB_CT_MAPS_H
#define SY_LIB_CT_MAPS_H

#include "common.h"

/* Shared (not per-CPU) LRU: the two directions of a flow arrive on different CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sy_ct_key);
	__type(value, struct sy_ct_entry);
	__uint(max_entries, SY_DEFAULT_CT);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sy_ct_key);
	__type(value, struct sy_nat_entry);
	__uint(max_entries, SY_DEFAULT_NAT);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_pkt_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_pkt_config SEC(".maps");

/* The per-packet settings; NULL only if the array lookup fails. */
static __always_inline struct sy_pkt_config *pkt_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sy_pkt_config, &zero);
}

/* How long an entry stays usable after its last packet: sy_pkt_config's timeout for its state,
 * or the SY_CT_TIMEOUT_* default where that is zero; never longer than the unreplied timeout
 * until the backend has answered (like the kernel's unreplied timeouts), so a flow nobody
 * answers frees its entry and SNAT port soon. */
static __always_inline __u64 ct_timeout_ns(const struct sy_ct_entry *e, __u8 proto,
					   const struct sy_pkt_config *cfg)
{
	__u32 s;

	/* SCTP: established (an association is long-lived and its
	 * heartbeats every 30 s must not outlive the entry) until ABORT or SHUTDOWN COMPLETE, then
	 * closing; TCP's timeouts. */
	if (proto == IPPROTO_TCP || proto == IPPROTO_SCTP) {
		if (e->state == SY_CT_SYN_SENT)
			s = cfg && cfg->timeout_tcp_syn_s ? cfg->timeout_tcp_syn_s : SY_CT_TIMEOUT_TCP_SYN_S;
		else if (e->state == SY_CT_CLOSING)
			s = cfg && cfg->timeout_tcp_closing_s ? cfg->timeout_tcp_closing_s
							      : SY_CT_TIMEOUT_TCP_CLOSING_S;
		else
			s = cfg && cfg->timeout_tcp_established_s ? cfg->timeout_tcp_established_s
								  : SY_CT_TIMEOUT_TCP_ESTABLISHED_S;
	} else if (proto == IPPROTO_UDP) {
		s = cfg && cfg->timeout_udp_s ? cfg->timeout_udp_s : SY_CT_TIMEOUT_UDP_S;
	} else {
		s = cfg && cfg->timeout_other_s ? cfg->timeout_other_s : SY_CT_TIMEOUT_OTHER_S;
	}
	if (!(e->flags & SY_CT_F_REPLY_SEEN)) {
		__u32 u = cfg && cfg->timeout_unreplied_s ? cfg->timeout_unreplied_s
							  : SY_CT_TIMEOUT_UNREPLIED_S;

		if (u < s)
			s = u;
	}
	return (__u64)s * NSEC_PER_SEC;
}

static __always_inline int ct_expired(const struct sy_ct_entry *e, __u8 proto,
				      const struct sy_pkt_config *cfg, __u64 now)
{
	return sy_age_ns(now, e->last_seen_ns) > ct_timeout_ns(e, proto, cfg);
}

#endif /* SY_LIB_CT_MAPS_H */
