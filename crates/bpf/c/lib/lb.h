/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb.h - frontend lookup and backend selection shared by the socket programs (sock.bpf.c)
 * and the per-packet programs (nodeport.bpf.c), so both paths decide the same way from the
 * same maps.
 */
#ifndef SY_LIB_LB_H
#define SY_LIB_LB_H

#include "maps.h"
#include "addr.h"

/* Is a an address of this node (sy_node_addrs, the model's NodePort addresses)? A loopback
 * address counts only where allowed as well: on the socket path in the node's own network
 * namespace. So 127.0.0.1 carries NodePorts only when configured (a --nodeport-addresses CIDR
 * naming it), only for the node's own sockets, never for packets from outside (CVE-2020-8558). */
static __always_inline int addr_is_node_local(const struct sy_addr *a, __u8 family,
					      int allow_loopback)
{
	struct sy_node_addr_key k = {};

	if (addr_is_loopback(a, family) && !allow_loopback)
		return 0;
	k.addr = *a;
	k.family = family;
	return bpf_map_lookup_elem(&sy_node_addrs, &k) != NULL;
}

/* The frontend for a destination: exact entry first, then the NodePort wildcard when the
 * destination is one of this node's addresses. The socket path (from_inside) prefers the
 * internal scope, and accepts loopback where allow_loopback says so (only in the node's own
 * network namespace); the per-packet path uses the default scope only. */
static __always_inline struct sy_frontend *lookup_frontend(const struct sy_addr *dst, __be16 port,
							    __u8 proto, __u8 family, int from_inside,
							    int allow_loopback)
{
	struct sy_frontend_key key = {};
	struct sy_frontend *fe;

	key.addr = *dst;
	key.port = port;
	key.proto = proto;
	key.family = family;
	key.scope = SY_SCOPE_DEFAULT;
	fe = bpf_map_lookup_elem(&sy_frontends, &key);
	if (!fe) {
		if (!addr_is_node_local(dst, family, allow_loopback))
			return NULL;
		__builtin_memset(&key.addr, 0, sizeof(key.addr));
		fe = bpf_map_lookup_elem(&sy_frontends, &key);
		if (!fe || !(fe->flags & SY_FE_NODEPORT))
			return NULL;
	}
	if (from_inside && (fe->flags & SY_FE_SPLIT_SCOPE)) {
		struct sy_frontend *internal;

		key.scope = SY_SCOPE_INTERNAL;
		internal = bpf_map_lookup_elem(&sy_frontends, &key);
		if (internal)
			return internal;
	}
	return fe;
}

/* Is a remembered choice still one of the frontend's current backends? */
static __always_inline int choice_still_valid(const struct sy_frontend *fe,
					      const struct sy_affinity *choice)
{
	struct sy_slot_key sk = {};
	__u32 *be;

	if (choice->slot == SY_SLOT_NONE)
		return (fe->flags & SY_FE_MAGLEV) != 0;
	if (choice->slot >= fe->backend_count)
		return 0;
	sk.frontend_id = fe->id;
	sk.slot = choice->slot;
	be = bpf_map_lookup_elem(&sy_slots, &sk);
	return be && *be == choice->backend_id;
}

struct pick {
	__u32 backend_id;
	__u32 slot;
	__u32 reason;
};

static __always_inline struct sy_config *sy_get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sy_config, &zero);
}

/* Backend at hash % M of the frontend's Maglev table. Returns 0 or a negative reason. */
static __always_inline int pick_maglev(const struct sy_frontend *fe, const struct sy_config *cfg,
				       __u64 hash, struct pick *out)
{
	void *table = bpf_map_lookup_elem(&sy_maglev, &fe->id);
	__u32 index, *be;

	if (!table || cfg->maglev_table_size == 0)
		return -SY_REASON_ERR_MAGLEV_MISSING;
	index = (__u32)(hash % cfg->maglev_table_size);
	be = bpf_map_lookup_elem(table, &index);
	if (!be || *be == 0)
		return -SY_REASON_ERR_MAGLEV_MISSING;
	out->backend_id = *be;
	out->slot = SY_SLOT_NONE;
	out->reason = SY_REASON_TRANSLATED_MAGLEV;
	return 0;
}

/* A uniformly random slot. Returns 0 or a negative reason. */
static __always_inline int pick_random(const struct sy_frontend *fe, struct pick *out)
{
	struct sy_slot_key sk = {};
	__u32 *be;

	if (fe->backend_count == 0)
		return -SY_REASON_DROP_NO_BACKEND;
	sk.frontend_id = fe->id;
	sk.slot = bpf_get_prandom_u32() % fe->backend_count;
	be = bpf_map_lookup_elem(&sy_slots, &sk);
	if (!be)
		return -SY_REASON_ERR_SLOT_MISSING;
	out->backend_id = *be;
	out->slot = sk.slot;
	out->reason = SY_REASON_TRANSLATED_RANDOM;
	return 0;
}

#endif /* SY_LIB_LB_H */
