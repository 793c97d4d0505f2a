/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb.h - frontend lookup and backend selection shared by the socket programs (sock.bpf.c)
 * and the per-packet programs (nodeport.bpf.c), so both paths decide the same way from the
 * same maps. Include after switchyard.h and bpf_endian.h.
 */
#ifndef SWITCHYARD_LB_H
#define SWITCHYARD_LB_H

static __always_inline void sy_count(__u32 reason, __u64 bytes)
{
	struct sy_counter *c = bpf_map_lookup_elem(&sy_counters, &reason);
	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

static __always_inline void addr_from_ip4(struct sy_addr *a, __u32 ip4_be)
{
	a->words[0] = 0;
	a->words[1] = 0;
	a->words[2] = bpf_htonl(0x0000ffff);
	a->words[3] = ip4_be;
}

static __always_inline int addr_is_v4_mapped(const struct sy_addr *a)
{
	return a->words[0] == 0 && a->words[1] == 0 && a->words[2] == bpf_htonl(0x0000ffff);
}

static __always_inline int addr_is_loopback(const struct sy_addr *a, __u8 family)
{
	if (family == SY_AF_INET)
		return (bpf_ntohl(a->words[3]) >> 24) == 127;
	return a->words[0] == 0 && a->words[1] == 0 && a->words[2] == 0 &&
	       a->words[3] == bpf_htonl(1);
}

static __always_inline int addr_eq(const struct sy_addr *a, const struct sy_addr *b)
{
	return a->words[0] == b->words[0] && a->words[1] == b->words[1] &&
	       a->words[2] == b->words[2] && a->words[3] == b->words[3];
}

/* Is a an address of this node? Loopback counts only where allowed (the socket path);
 * packets from outside for 127/8 are never NodePort traffic (CVE-2020-8558). */
static __always_inline int addr_is_node_local(const struct sy_addr *a, __u8 family,
					      int allow_loopback)
{
	struct sy_node_addr_key k = {};

	if (addr_is_loopback(a, family))
		return allow_loopback;
	k.addr = *a;
	k.family = family;
	return bpf_map_lookup_elem(&sy_node_addrs, &k) != NULL;
}

/* The frontend for a destination: exact entry first, then the NodePort wildcard when the
 * destination is one of this node's addresses. The socket path (from_inside) prefers the
 * internal scope and accepts loopback; the per-packet path uses the default scope only. */
static __always_inline struct sy_frontend *lookup_frontend(const struct sy_addr *dst, __be16 port,
							    __u8 proto, __u8 family, int from_inside)
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
		if (!addr_is_node_local(dst, family, from_inside))
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

#endif /* SWITCHYARD_LB_H */
