/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nodeport_maps.h - the per-packet path's own maps: conntrack (sy_ct) and its settings
 * (sy_pkt_config) from ct_maps.h, reverse NAT (sy_nat), loadBalancerSourceRanges
 * (sy_src_ranges). Only the per-packet object includes this header (the decapsulation only
 * ct_maps.h), so no other object creates and pins these with its own sizes.
 */
#ifndef SY_LIB_NODEPORT_MAPS_H
#define SY_LIB_NODEPORT_MAPS_H

#include "maps.h"
#include "ct_maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sy_ct_key);
	__type(value, struct sy_nat_entry);
	__uint(max_entries, SY_DEFAULT_NAT);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct sy_src_range_key);
	__type(value, __u32);
	__uint(max_entries, SY_DEFAULT_SRC_RANGES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_src_ranges SEC(".maps");

#endif /* SY_LIB_NODEPORT_MAPS_H */
