/* SPDX-License-Identifier: Apache-2.0 */
/*
 * scratch.h - per-CPU room for the parsed packet and its translation, and parse() as a global
 * function; each per-packet object (TC, XDP) gets its own copy of both.
 */
#ifndef SY_LIB_SCRATCH_H
#define SY_LIB_SCRATCH_H

#include "parse.h"
#include "xlat.h"

/* Per-CPU scratch for the parsed packet and its translation: keeps the entry functions'
 * frames small (the combined BPF stack of a call chain is 512 bytes). Slot 0 ingress (and
 * XDP, whose object has its own map), 1 egress; a program never runs nested on its own CPU
 * within one direction. */
struct scratch {
	struct pkt p;
	struct xlat x;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct scratch);
	__uint(max_entries, 2);
} sy_pkt_scratch SEC(".maps");

static __always_inline struct scratch *scratch(__u32 slot)
{
	struct scratch *s = bpf_map_lookup_elem(&sy_pkt_scratch, &slot);

	if (s)
		__builtin_memset(s, 0, sizeof(*s));
	return s;
}

/* parse() as a global function: the verifier checks it once, not once per path of the
 * programs (its IPv6 extension-header walk would otherwise multiply the states of all that
 * follows). */
__attribute__((noinline)) int sy_parse(struct __ctx_buff *skb, struct pkt *p)
{
	if (!skb || !p)
		return P_PASS;
	return parse(skb, p);
}

#endif /* SY_LIB_SCRATCH_H */
