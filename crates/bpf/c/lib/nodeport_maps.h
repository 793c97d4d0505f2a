/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nodeport_maps.h - the per-packet path's own map: reverse NAT (sy_nat). Conntrack (sy_ct) and
 * its settings (sy_pkt_config) are in ct_maps.h (the decapsulation reads them too), and
 * sy_src_ranges in maps.h (the socket path checks it too). Only the per-packet object includes
 * this header, so no other object creates and pins sy_nat with its own size.
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

#endif /* SY_LIB_NODEPORT_MAPS_H */
