/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nodeport_maps.h - the per-packet path's own map: the nodes of remote backends for DSR
 * (sy_dsr_nodes). Conntrack (sy_ct), reverse NAT (sy_nat) and their settings (sy_pkt_config)
 * are in ct_maps.h (the decapsulation reads and, for DSR, writes them too), and sy_src_ranges
 * in maps.h (the socket path checks it too).
 */
#ifndef SY_LIB_NODEPORT_MAPS_H
#define SY_LIB_NODEPORT_MAPS_H

#include "maps.h"
#include "ct_maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sy_node_addr_key);
	__type(value, struct sy_addr);
	__uint(max_entries, SY_DEFAULT_DSR_NODES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_dsr_nodes SEC(".maps");

#endif /* SY_LIB_NODEPORT_MAPS_H */
