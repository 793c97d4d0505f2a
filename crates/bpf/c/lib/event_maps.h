/* SPDX-License-Identifier: Apache-2.0 */
/*
 * event_maps.h - the monitor's maps (switchyard monitor), in a header of their own so that
 * every object with events includes them: the node's objects (through maps.h, one instance in
 * the agent's bpffs directory) and the director's (its own instance in its own directory).
 * struct sy_monitor_config and struct sy_event are in include/switchyard.h.
 */
#ifndef SY_LIB_EVENT_MAPS_H
#define SY_LIB_EVENT_MAPS_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sy_monitor_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_monitor SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SY_DEFAULT_EVENTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sy_events SEC(".maps");

#endif /* SY_LIB_EVENT_MAPS_H */
