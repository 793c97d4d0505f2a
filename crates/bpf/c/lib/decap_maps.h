/* SPDX-License-Identifier: Apache-2.0 */
/*
 * decap_maps.h - the node's decapsulation maps (c/decap.bpf.c), pinned by name beside the
 * node's other maps.
 */
#ifndef SY_LIB_DECAP_MAPS_H
#define SY_LIB_DECAP_MAPS_H

#include "common.h"

#define SY_DECAP_DEFAULT_DIRECTORS 256

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sy_node_addr_key);
	__type(value, __u32);
	__uint(max_entries, SY_DECAP_DEFAULT_DIRECTORS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_decap_directors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_decap_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_decap_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_counter);
	__uint(max_entries, SY_DECAP_REASON_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_decap_counters SEC(".maps");

static __always_inline void sy_decap_count(__u32 reason, __u64 bytes)
{
	struct sy_counter *c = bpf_map_lookup_elem(&sy_decap_counters, &reason);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

#endif /* SY_LIB_DECAP_MAPS_H */
