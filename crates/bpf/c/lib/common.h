/* SPDX-License-Identifier: Apache-2.0 */
/*
 * common.h - what every BPF program of Switchyard starts from: the kernel and libbpf headers,
 * the ABI (switchyard.h) and a few macros. Include first.
 */
#ifndef SY_LIB_COMMON_H
#define SY_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "switchyard.h"
#include "compiler.h"

#define NSEC_PER_SEC 1000000000ull

/* How long ago `then` was at `now`, 0 if it is ahead. For a time another CPU wrote into a
 * shared map: a packet reads the clock, and before it reads the entry, a packet of the same
 * flow on another CPU (the client's handshake ACK and its first data, say) may store a later
 * clock read there. `now - then` would wrap around and call the entry ages old (issue 17: a
 * flow's conntrack taken for expired at its first round trip, its packet for a new flow). */
static __always_inline __u64 sy_age_ns(__u64 now, __u64 then)
{
	return now > then ? now - then : 0;
}
/* skb->pkt_type of a frame for another host's MAC address (PACKET_OTHERHOST, linux/if_packet.h). */
#define SY_PACKET_OTHERHOST 3

#endif /* SY_LIB_COMMON_H */
