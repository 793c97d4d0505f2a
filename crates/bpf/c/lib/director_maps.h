/* SPDX-License-Identifier: Apache-2.0 */
/*
 * director_maps.h - the director's maps (c/director.bpf.c), pinned by name in the director's
 * own bpffs directory. Default sizes; the loader overrides max_entries by name.
 */
#ifndef SY_LIB_DIRECTOR_MAPS_H
#define SY_LIB_DIRECTOR_MAPS_H

#include "common.h"

#define SY_DIR_DEFAULT_VIPS 4096
#define SY_DIR_DEFAULT_TABLES 4096
#define SY_DIR_DEFAULT_NODES 8192
#define SY_DIR_DEFAULT_TABLE_SIZE 65537
#define SY_DIR_DEFAULT_TABLE_NODES 65536

/* VIPs by home slot (struct sy_dir_vip_slot); the loader sets max_entries to a power of two,
 * at least twice the VIP capacity, and sy_dir_config.vip_slot_shift to match. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_dir_vip_slot);
	__uint(max_entries, 2 * SY_DIR_DEFAULT_VIPS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_dir_vip_slots SEC(".maps");

/* The VIPs whose home slot holds another VIP (the overflow of sy_dir_vip_slots). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sy_frontend_key);
	__type(value, struct sy_dir_vip);
	__uint(max_entries, SY_DIR_DEFAULT_VIPS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_dir_vips SEC(".maps");

/* Inner template: BPF_F_INNER_MAP lets user space create tables of the configured M. */
struct sy_dir_table_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, SY_DIR_DEFAULT_TABLE_SIZE);
	__uint(map_flags, BPF_F_INNER_MAP);
};

/* Tables by table id: an array of maps (ids are small and reused, as node ids below; the
 * verifier inlines its lookup); an empty slot finds nothing. Index 0 is never used; the loader
 * sets max_entries to the table capacity + 1. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, SY_DIR_DEFAULT_TABLES + 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct sy_dir_table_inner);
} sy_dir_tables SEC(".maps");

/* The second chance: for a table built when a VIP's nodes changed, per slot the node id the
 * VIP's previous table had there, 0 where it is the same node (or there was none). Same index
 * as sy_dir_tables; written before the table, removed after it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, SY_DIR_DEFAULT_TABLES + 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct sy_dir_table_inner);
} sy_dir_prev_tables SEC(".maps");

/* Node entries by node id. Ids are small (user space reuses freed ids, smallest first, so an id
 * never exceeds the most entries ever present at once): an array, whose lookup the verifier
 * inlines, unlike a hash's. An unused id reads as all zero (family 0: no node). Index 0 is
 * never used; the loader sets max_entries to the node capacity + 1. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_dir_node);
	__uint(max_entries, SY_DIR_DEFAULT_NODES + 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_dir_nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_dir_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_dir_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_counter);
	__uint(max_entries, SY_DIR_REASON_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_dir_counters SEC(".maps");

/* Per-VIP and per-node counters, indexed by the (small) VIP and node ids: per-CPU arrays, so
 * counting is an inlined lookup and two adds. User space zeroes an id's counters before it
 * gives the id to a new VIP or node. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_dir_counter);
	__uint(max_entries, SY_DIR_DEFAULT_VIPS + 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_dir_vip_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_dir_counter);
	__uint(max_entries, SY_DIR_DEFAULT_NODES + 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_dir_node_counters SEC(".maps");

/* Names and weights for user space (struct sy_dir_table_node); never read by the program. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sy_dir_table_node_key);
	__type(value, struct sy_dir_table_node);
	__uint(max_entries, SY_DIR_DEFAULT_TABLE_NODES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_dir_table_nodes SEC(".maps");

/* Health of every probed node target (struct sy_dir_health); never read by the program. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sy_dir_health_key);
	__type(value, struct sy_dir_health);
	__uint(max_entries, SY_DIR_DEFAULT_NODES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_dir_health SEC(".maps");

/* The next hop towards a node, as bpf_fib_lookup last said, kept as the outer headers it
 * makes (program-private: user space never reads it). A route lookup costs more than the rest
 * of the director's work together (IPv6 most), and a node's next hop changes rarely: each CPU
 * reuses an answer for SY_DIR_ROUTE_TTL_NS, for packets no longer than the longest one a
 * lookup accepted (a longer one is looked up: too big answers frag-needed), so a route,
 * neighbour or MTU change takes effect within that time. Only successful lookups are kept. */
#define SY_DIR_ROUTE_TTL_NS (100ull * 1000 * 1000)
/* Cache slots per CPU (a power of two): node id mod slots; two nodes in one slot take turns. */
#define SY_DIR_ROUTE_SLOTS 4096
/* Bytes of sy_dir_route.hdr: Ethernet and the outer IPv6 header (IPv4 uses the first 34). */
#define SY_DIR_HDR_LEN 56

struct sy_dir_route {
	struct sy_addr dst; /* the node address it was looked up for (tag: else a miss) */
	struct sy_addr src; /* the director address it was made with (tag: the config's) */
	__u64 expires_ns;   /* bpf_ktime_get_coarse_ns() deadline; 0: invalid */
	/* The jiffies64 tick in which expires_ns was last found ahead; 0: none. The coarse clock
	 * moves only with the tick, so within that tick the entry is fresh without reading it. */
	__u64 fresh_jiffies;
	__u32 in_ifindex;   /* the device the packet came in on (output lookups are per device) */
	__u32 ifindex;      /* out device */
	__u32 ok_len;       /* the largest outer length a lookup accepted (route MTU >= it) */
	/* IPv4: the ones' complement sum of hdr's IP header, whose tot_len, protocol and check
	 * are zero: a packet's checksum adds its two fields to it and folds. */
	__u32 csum;
	/* The template of the frame's first bytes: Ethernet (the next hop's MACs) and the outer
	 * IP header with everything but the per-packet fields (IPv4: tot_len, protocol, check;
	 * IPv6: flow label, payload_len, next header), which are zero here. Copied in 8-byte
	 * words in front of the inner packet: the header is built once per lookup, not per
	 * packet. */
	__u8 hdr[SY_DIR_HDR_LEN] __attribute__((aligned(8)));
};

/* An array (the lookup is inlined, unlike a hash's), per CPU (no locks, no torn entries);
 * not pinned: a new program starts with an empty cache. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_dir_route);
	__uint(max_entries, SY_DIR_ROUTE_SLOTS);
} sy_dir_routes SEC(".maps");

/* The VIP of `key` (8-byte aligned): its home slot's, else the overflow hash's when the slot
 * says some VIP of this home lives there; NULL: no VIP. */
static __always_inline const struct sy_dir_vip *
sy_dir_vip_lookup(const struct sy_dir_config *cfg, const struct sy_frontend_key *key)
{
	__u32 i = sy_dir_vip_slot_of(key, cfg->vip_slot_shift);
	const struct sy_dir_vip_slot *s = bpf_map_lookup_elem(&sy_dir_vip_slots, &i);
	const __u64 *a, *b;

	if (!s)
		return 0;
	a = (const __u64 *)&s->key;
	b = (const __u64 *)key;
	if (((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2])) == 0)
		return &s->vip;
	if (s->flags & SY_DIR_SLOT_OVERFLOW)
		return bpf_map_lookup_elem(&sy_dir_vips, key);
	return 0;
}

static __always_inline void sy_dir_count(__u32 reason, __u64 bytes)
{
	struct sy_counter *c = bpf_map_lookup_elem(&sy_dir_counters, &reason);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

/* Adds one packet to a per-CPU array counter (an id beyond the array is not counted). */
static __always_inline void sy_dir_count_id(void *map, __u32 id, __u64 bytes)
{
	struct sy_dir_counter *c = bpf_map_lookup_elem(map, &id);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

#endif /* SY_LIB_DIRECTOR_MAPS_H */
