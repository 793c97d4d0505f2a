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
/* skb->pkt_type of a frame for another host's MAC address (PACKET_OTHERHOST, linux/if_packet.h). */
#define SY_PACKET_OTHERHOST 3

#endif /* SY_LIB_COMMON_H */
