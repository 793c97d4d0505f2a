/* SPDX-License-Identifier: Apache-2.0 */
/*
 * counters.h - every decision and drop is counted: per reason (sy_counters, enum sy_reason)
 * and per frontend (sy_fe_counters, for per-Service metrics).
 */
#ifndef SY_LIB_COUNTERS_H
#define SY_LIB_COUNTERS_H

#include "maps.h"

/* Counts one decision or drop (packets += 1, bytes += bytes) under reason. */
static __always_inline void sy_count(__u32 reason, __u64 bytes)
{
	struct sy_counter *c = bpf_map_lookup_elem(&sy_counters, &reason);
	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

/* Adds to the frontend's per-CPU counters, creating its entry on first use. */
static __always_inline void sy_count_frontend(__u32 frontend_id, __u64 connections,
					      __u64 packets, __u64 bytes)
{
	struct sy_fe_counter *c = bpf_map_lookup_elem(&sy_fe_counters, &frontend_id);
	struct sy_fe_counter init = {};

	if (!c) {
		init.connections = connections;
		init.packets = packets;
		init.bytes = bytes;
		if (bpf_map_update_elem(&sy_fe_counters, &frontend_id, &init, BPF_NOEXIST) == 0)
			return;
		/* Created meanwhile on another CPU (or the map is full): add to it if present. */
		c = bpf_map_lookup_elem(&sy_fe_counters, &frontend_id);
		if (!c)
			return;
	}
	c->connections += connections;
	c->packets += packets;
	c->bytes += bytes;
}

#endif /* SY_LIB_COUNTERS_H */
