/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nodeport_maps.h - the per-packet path's own maps: conntrack (sy_ct), reverse NAT (sy_nat)
 * and its settings (sy_pkt_config); sy_src_ranges is in maps.h (both paths check it). Only the
 * per-packet object includes this header, so no other object creates and pins them with its
 * own sizes.
 */
#ifndef SY_LIB_NODEPORT_MAPS_H
#define SY_LIB_NODEPORT_MAPS_H

#include "maps.h"

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

#endif /* SY_LIB_NODEPORT_MAPS_H */
