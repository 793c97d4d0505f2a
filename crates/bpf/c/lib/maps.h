/* SPDX-License-Identifier: Apache-2.0 */
/*
 * maps.h - the maps every load-balancing program shares (frontends, slots, backends, Maglev
 * tables, affinity, node addresses, source ranges, counters, config, monitor). Each is pinned by name under
 * the loader's bpffs directory, so every object that includes this header (the socket and
 * the per-packet programs) shares one instance; max_entries are the SY_DEFAULT_* values of
 * switchyard.h, which the loader overrides by name (EbpfLoader::map_max_entries).
 */
#ifndef SY_LIB_MAPS_H
#define SY_LIB_MAPS_H

#include "common.h"
#include "event_maps.h" /* sy_monitor, sy_events */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sy_frontend_key);
	__type(value, struct sy_frontend);
	__uint(max_entries, SY_DEFAULT_FRONTENDS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_frontends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sy_slot_key);
	__type(value, __u32);
	__uint(max_entries, SY_DEFAULT_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct sy_backend);
	__uint(max_entries, SY_DEFAULT_BACKENDS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_backends SEC(".maps");

/* Inner map template of sy_maglev: BPF_F_INNER_MAP lets user space create tables of the
 * configured size M (sy_config.maglev_table_size) instead of this template's size. */
struct sy_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, SY_MAGLEV_DEFAULT_TABLE_SIZE);
	__uint(map_flags, BPF_F_INNER_MAP);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, SY_DEFAULT_MAGLEV);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct sy_maglev_inner);
} sy_maglev SEC(".maps");

/* loadBalancerSourceRanges: the per-packet path checks the client of a new flow, the socket
 * path the source of a translated socket's first packet (cgroup_skb/egress). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct sy_src_range_key);
	__type(value, __u32);
	__uint(max_entries, SY_DEFAULT_SRC_RANGES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_src_ranges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sy_sock_revnat_key);
	__type(value, struct sy_sock_revnat);
	__uint(max_entries, SY_DEFAULT_SOCK_REVNAT);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_sock_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sy_affinity_key);
	__type(value, struct sy_affinity);
	__uint(max_entries, SY_DEFAULT_AFFINITY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sy_sock_sticky_key);
	__type(value, struct sy_affinity);
	__uint(max_entries, SY_DEFAULT_STICKY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_sock_sticky SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sy_node_addr_key);
	__type(value, __u32);
	__uint(max_entries, SY_DEFAULT_NODE_ADDRS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_node_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_counter);
	__uint(max_entries, SY_REASON_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, __u32);
	__type(value, struct sy_fe_counter);
	__uint(max_entries, SY_DEFAULT_FE_COUNTERS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_fe_counters SEC(".maps");

#endif /* SY_LIB_MAPS_H */
