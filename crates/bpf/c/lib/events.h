/* SPDX-License-Identifier: Apache-2.0 */
/*
 * events.h - the monitor stream (switchyard monitor): sampled sy_event records in the sy_events
 * ring buffer, written only while sy_monitor[0].enabled is set. Included by the node's objects
 * and the director's (SY_PATH_DIR events).
 */
#ifndef SY_LIB_EVENTS_H
#define SY_LIB_EVENTS_H

#include "event_maps.h"

/* Should this event go to the monitor? One array lookup when the monitor is off. */
static __always_inline int sy_monitor_sampled(int is_drop)
{
	__u32 zero = 0, every;
	struct sy_monitor_config *m = bpf_map_lookup_elem(&sy_monitor, &zero);

	if (!m || !m->enabled)
		return 0;
	every = is_drop ? m->drop_sample_every : m->sample_every;
	return every <= 1 || bpf_get_prandom_u32() % every == 0;
}

/* A record in sy_events with the fields every path fills, the rest zero; NULL when the monitor
 * is off, the event was not sampled, or the ring is full (the event is lost, never the packet).
 * The caller fills its path's fields and submits. */
static __always_inline struct sy_event *sy_event_start(int is_drop, __u32 reason, __u8 path,
							__u32 frontend_id, __u32 backend_id)
{
	struct sy_event *ev;

	if (!sy_monitor_sampled(is_drop))
		return 0;
	ev = bpf_ringbuf_reserve(&sy_events, sizeof(struct sy_event), 0);
	if (!ev)
		return 0;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts_ns = bpf_ktime_get_ns();
	ev->reason = reason;
	ev->path = path;
	ev->frontend_id = frontend_id;
	ev->backend_id = backend_id;
	return ev;
}

#endif /* SY_LIB_EVENTS_H */
