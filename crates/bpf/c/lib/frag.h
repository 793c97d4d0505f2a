/* SPDX-License-Identifier: Apache-2.0 */
/*
 * frag.h - IP fragments of translated flows (IPv4, and IPv6 fragment headers). Only the first
 * fragment carries the transport header, so its ports are remembered under (addresses,
 * protocol, fragment id) when its flow is translated, and the later fragments of the same
 * datagram look them up and follow the same conntrack or NAT entry (addresses rewritten, no
 * ports, no transport checksum: it sits in the first fragment). Cilium does the same
 * (cilium_ipv4_frag_datagrams). A later fragment that arrives before its first, or whose first
 * was not translated, passes to the stack untouched (PKT_PASS_FRAGMENT).
 */
#ifndef SY_LIB_FRAG_H
#define SY_LIB_FRAG_H

#include "parse.h"

/* Datagrams in flight at once; LRU, so a lost last fragment costs nothing. Not pinned: an
 * agent restart only loses the datagrams being fragmented at that moment. */
#define SY_FRAG_ENTRIES 8192

struct sy_frag_key {
	struct sy_addr saddr;
	struct sy_addr daddr;
	__be32 id;   /* IPv4 identification (zero-extended) or IPv6 fragment id */
	__u8 proto;  /* IPv4 protocol / IPv6 fragment header's next header */
	__u8 family;
	__u8 pad[2]; /* zero */
};

struct sy_frag_ports {
	__be16 sport;
	__be16 dport;
	__u8 proto;  /* transport protocol found after the first fragment's headers */
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sy_frag_key);
	__type(value, struct sy_frag_ports);
	__uint(max_entries, SY_FRAG_ENTRIES);
} sy_frags SEC(".maps");

static __always_inline void frag_key(struct sy_frag_key *k, const struct pkt *p)
{
	k->saddr = p->t.saddr;
	k->daddr = p->t.daddr;
	k->id = p->frag_id;
	k->proto = p->frag_proto;
	k->family = p->t.family;
	k->pad[0] = 0;
	k->pad[1] = 0;
}

/* The first fragment of a datagram whose flow is being translated: remember its ports (the
 * packet's own, before translation: later fragments arrive with the same addresses). */
static __always_inline void frag_remember(const struct pkt *p)
{
	struct sy_frag_key k;
	struct sy_frag_ports v = {};

	if (p->frag != FRAG_FIRST)
		return;
	frag_key(&k, p);
	v.sport = p->t.sport;
	v.dport = p->t.dport;
	v.proto = p->t.proto;
	bpf_map_update_elem(&sy_frags, &k, &v, BPF_ANY);
}

/* A later fragment: fill in the ports and protocol of its first fragment. 0 if unknown. */
static __always_inline int frag_follow(struct pkt *p)
{
	struct sy_frag_key k;
	struct sy_frag_ports *v;

	frag_key(&k, p);
	v = bpf_map_lookup_elem(&sy_frags, &k);
	if (!v)
		return 0;
	p->t.sport = v->sport;
	p->t.dport = v->dport;
	p->t.proto = v->proto;
	return 1;
}

#endif /* SY_LIB_FRAG_H */
