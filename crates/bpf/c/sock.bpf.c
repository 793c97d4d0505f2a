/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Socket-level load balancing (cgroup sock_addr hooks), in the style of Cilium's
 * kube-proxy replacement: connect()/sendmsg() to a frontend is rewritten to a backend before
 * the protocol sees it, so no packet is ever NATed; recvmsg()/getpeername() rewrite the
 * backend back to the frontend so clients that check the peer (dig, nslookup) are happy.
 *
 * A frontend without backends makes connect()/sendmsg() fail at once with ECONNREFUSED:
 * the program sets the syscall's return value with bpf_set_retval(-ECONNREFUSED) and
 * returns 0 ("reject"); without bpf_set_retval the kernel would report EPERM.
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/counters.h"
#include "lib/events.h"
#include "lib/siphash.h"
#include "lib/lb.h"

#define SY_ECONNREFUSED 111

/* sock_addr return codes */
#define SY_ALLOW 1
#define SY_REJECT 0

char LICENSE[] SEC("license") = "GPL";

/*
 * loadBalancerSourceRanges on the socket path. When the source is known at connect()/sendmsg()
 * (a socket bound to an address, a datagram whose source the sender chose) it is checked there
 * and the call is refused with ECONNREFUSED. Otherwise the kernel picks the source after these
 * hooks (routing), so the check cannot happen here: a socket translated for a frontend with
 * SY_FE_SOURCE_RANGES is marked in its local storage, and sy_sock_egress checks the source of
 * its next packet (the first one after routing) against sy_src_ranges. Outside the ranges that
 * packet is dropped, as the per-packet path and kube-proxy drop it: a TCP connect() never
 * completes, a UDP send fails with EPERM (cgroup_skb programs cannot choose the errno).
 * Sockets without the mark cost one socket-storage lookup per packet.
 *
 * Most pods connect unbound, so the check above would only drop (a connect() that times out).
 * To refuse at the call instead, the programs learn each pod network namespace's source address
 * per family (sy_netns_src): from every TCP connect and accepted connection in it (sy_sock_ops)
 * and from the first packet of every UDP socket and of every checked socket (sy_sock_egress). A namespace that has shown one source only (a pod: one
 * interface) is then refused at connect()/sendmsg() with ECONNREFUSED when that source is outside
 * the ranges; its first packet is still checked as above. A namespace that has shown two
 * sources of a family (several interfaces, or its address changed) is never refused on a guess,
 * nor is the node's own namespace (routes there pick different sources per destination).
 */
struct sy_sock_src_check {
	__u32 frontend_id;
	__u32 pending; /* 1: the next packet's source is checked */
	__u32 learned; /* 1: this socket's source has been shown to sy_netns_src */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__type(key, int);
	__type(value, struct sy_sock_src_check);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sy_sock_src_check SEC(".maps");

/* A network namespace's source address for one family, as its sockets have shown it. */
struct sy_netns_src_key {
	__u64 netns_cookie;
	__u32 family; /* SY_AF_INET or SY_AF_INET6 */
	__u32 pad;
};

struct sy_netns_src {
	struct sy_addr addr;
	__u32 several; /* 1: more than one source seen: never used to refuse */
	__u32 pad;
};

/* LRU: a node runs at most a few hundred pod namespaces; an evicted entry is learned again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sy_netns_src_key);
	__type(value, struct sy_netns_src);
	__uint(max_entries, 4096);
} sy_netns_src SEC(".maps");

static __always_inline __u32 addr_family(const struct sy_addr *a)
{
	return addr_is_v4_mapped(a) ? SY_AF_INET : SY_AF_INET6;
}

/* A source that only ever reaches destinations of its own kind (loopback, link-local): a
 * pod's sidecar traffic over 127.0.0.1 says nothing about the source of its LB connections. */
static __always_inline int addr_is_local_scope(const struct sy_addr *a, __u32 family)
{
	if (family == SY_AF_INET)
		return (bpf_ntohl(a->words[3]) >> 24) == 127 ||
		       (bpf_ntohl(a->words[3]) >> 16) == 0xa9fe; /* 169.254/16 */
	return (a->words[0] == 0 && a->words[1] == 0 && a->words[2] == 0 &&
		a->words[3] == bpf_htonl(1)) ||
	       (bpf_ntohl(a->words[0]) >> 22) == (0xfe80 >> 6); /* fe80::/10 */
}

/* Records that a socket of namespace netns_cookie sent from src (not a wildcard). */
static __always_inline void learn_netns_source(__u64 netns_cookie, const struct sy_addr *src)
{
	struct sy_netns_src_key key = {};
	struct sy_netns_src *known;
	struct sy_netns_src fresh = {};

	key.netns_cookie = netns_cookie;
	key.family = addr_family(src);
	if (addr_is_local_scope(src, key.family))
		return;
	known = bpf_map_lookup_elem(&sy_netns_src, &key);
	if (known) {
		if (!known->several && __builtin_memcmp(&known->addr, src, sizeof(*src)) != 0)
			known->several = 1;
		return;
	}
	fresh.addr = *src;
	bpf_map_update_elem(&sy_netns_src, &key, &fresh, BPF_NOEXIST);
}

/* The one source namespace netns_cookie has shown for family, if it has shown exactly one. */
static __always_inline int learned_netns_source(__u64 netns_cookie, __u32 family,
						struct sy_addr *src)
{
	struct sy_netns_src_key key = {};
	struct sy_netns_src *known;

	key.netns_cookie = netns_cookie;
	key.family = family;
	known = bpf_map_lookup_elem(&sy_netns_src, &key);
	if (!known || known->several)
		return 0;
	*src = known->addr;
	return 1;
}

/* Whether src is inside the loadBalancerSourceRanges of frontend frontend_id. */
static __always_inline int source_in_ranges(__u32 frontend_id, const struct sy_addr *src)
{
	struct sy_src_range_key k = {};

	k.prefixlen = 32 + 128;
	k.frontend_id = frontend_id;
	k.addr = *src;
	return bpf_map_lookup_elem(&sy_src_ranges, &k) != 0;
}

/*
 * The source the socket's packets will carry, if known before routing: the address a socket is
 * bound to (connect), or the datagram's source (sendmsg: IP_PKTINFO, else the bound address).
 * Returns 0 when the kernel picks it later (unbound: all zero). is_v6 and is_sendmsg are
 * constants in every caller, so each program reads only the fields its hook allows.
 */
static __always_inline int known_source(struct bpf_sock_addr *ctx, int is_v6, int is_sendmsg,
					struct sy_addr *src)
{
	if (!is_v6) {
		__u32 ip4 = is_sendmsg ? ctx->msg_src_ip4 : ctx->sk->src_ip4;

		addr_from_ip4(src, ip4);
		return ip4 != 0;
	}
	if (is_sendmsg) {
		src->words[0] = ctx->msg_src_ip6[0];
		src->words[1] = ctx->msg_src_ip6[1];
		src->words[2] = ctx->msg_src_ip6[2];
		src->words[3] = ctx->msg_src_ip6[3];
	} else {
		src->words[0] = ctx->sk->src_ip6[0];
		src->words[1] = ctx->sk->src_ip6[1];
		src->words[2] = ctx->sk->src_ip6[2];
		src->words[3] = ctx->sk->src_ip6[3];
	}
	/* A v4-mapped wildcard (::ffff:0.0.0.0) is unbound too. */
	return (src->words[0] | src->words[1] | src->words[2] | src->words[3]) != 0 &&
	       !(addr_is_v4_mapped(src) && src->words[3] == 0);
}

#define SY_ETH_P_IP 0x0800
#define SY_ETH_P_IPV6 0x86DD

static __always_inline void count(__u32 reason)
{
	sy_count(reason, 0);
}

/* Tells the monitor (when on and sampled) about a translation or a refusal. */
static __always_inline void sock_event(__u32 reason, int is_drop, __u32 frontend_id,
				       __u32 backend_id, const struct sy_addr *dst, __be16 port,
				       __u8 proto, __u8 family, __u64 cookie)
{
	struct sy_event *ev = sy_event_start(is_drop, reason, SY_PATH_SOCK, frontend_id, backend_id);

	if (!ev)
		return;
	ev->cookie = cookie;
	ev->daddr = *dst;
	ev->dport = port;
	ev->proto = proto;
	ev->family = family;
	bpf_ringbuf_submit(ev, 0);
}

/* A fresh choice: Maglev table (hash of the socket cookie) or random slot.
 * Returns 0 or a negative error reason. */
static __always_inline int pick_backend(const struct sy_frontend *fe, __u64 cookie, struct pick *out)
{
	if (fe->flags & SY_FE_MAGLEV) {
		struct sy_config *cfg = sy_get_config();

		if (!cfg)
			return -SY_REASON_ERR_MAGLEV_MISSING;
		return pick_maglev(fe, cfg, sy_sock_hash(cfg, cookie), out);
	}
	return pick_random(fe, out);
}

/* Is ctx's socket in the node's own network namespace? Only there is loopback an address of
 * the node: a pod's 127.0.0.1 is the pod's own (kube-proxy's rules never see it either). */
static __always_inline int in_node_netns(struct bpf_sock_addr *ctx)
{
	struct sy_config *cfg = sy_get_config();

	return cfg && cfg->node_netns_cookie && bpf_get_netns_cookie(ctx) == cfg->node_netns_cookie;
}

/*
 * Translate ctx's destination if it is a frontend. Returns SY_ALLOW or SY_REJECT; on reject the
 * syscall fails with ECONNREFUSED.
 */
static __always_inline int translate(struct bpf_sock_addr *ctx, int is_v6, int is_sendmsg)
{
	struct sy_addr dst;
	__be16 port = (__be16)ctx->user_port;
	__u8 proto = (__u8)ctx->protocol;
	__u8 family;
	struct sy_frontend *fe;
	struct sy_backend *be;
	struct pick pick = {};
	struct sy_addr src = {};
	int src_known = 0;
	__u64 cookie, now;
	int err;

	if (is_v6) {
		dst.words[0] = ctx->user_ip6[0];
		dst.words[1] = ctx->user_ip6[1];
		dst.words[2] = ctx->user_ip6[2];
		dst.words[3] = ctx->user_ip6[3];
		family = addr_is_v4_mapped(&dst) ? SY_AF_INET : SY_AF_INET6;
	} else {
		addr_from_ip4(&dst, ctx->user_ip4);
		family = SY_AF_INET;
	}
	/* SCTP too: a kernel with SCTP calls the connect hooks for it (the frontends carry the
	 * protocol, so an SCTP Service is looked up like the others). */
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != 132 /* IPPROTO_SCTP */)
		return SY_ALLOW;

	fe = lookup_frontend(&dst, port, proto, family, 1,
			     addr_is_loopback(&dst, family) && in_node_netns(ctx));
	/* An unconnected UDP socket's datagram to anything else is not checked. */
	if (is_sendmsg && (!fe || !(fe->flags & SY_FE_SOURCE_RANGES))) {
		struct sy_sock_src_check *c = bpf_sk_storage_get(&sy_sock_src_check, ctx->sk, 0, 0);

		if (c)
			c->pending = 0;
	}
	if (!fe)
		return SY_ALLOW;

	if (fe->backend_count == 0) {
		count(SY_REASON_REJECT_NO_BACKEND);
		sock_event(SY_REASON_REJECT_NO_BACKEND, 1, fe->id, 0, &dst, port, proto, family,
			   bpf_get_socket_cookie(ctx));
		bpf_set_retval(-SY_ECONNREFUSED);
		return SY_REJECT;
	}

	/* Source ranges, source already known (bound socket, chosen datagram source) or learned
	 * for this pod's namespace: refuse the call itself. An unconnected UDP socket's earlier
	 * mark no longer applies. A learned source is a forecast, so the first packet is still
	 * checked (src_known stays 0). */
	if (fe->flags & SY_FE_SOURCE_RANGES) {
		int learned = 0;

		src_known = known_source(ctx, is_v6, is_sendmsg, &src);
		if (!src_known && !in_node_netns(ctx))
			learned = learned_netns_source(bpf_get_netns_cookie(ctx), family, &src);
		if ((src_known || learned) && !source_in_ranges(fe->id, &src)) {
			count(SY_REASON_REJECT_SOURCE_RANGE);
			sock_event(SY_REASON_REJECT_SOURCE_RANGE, 1, fe->id, 0, &dst, port, proto,
				   family, bpf_get_socket_cookie(ctx));
			bpf_set_retval(-SY_ECONNREFUSED);
			return SY_REJECT;
		}
		if (src_known) {
			struct sy_sock_src_check *c =
				bpf_sk_storage_get(&sy_sock_src_check, ctx->sk, 0, 0);

			if (c)
				c->pending = 0;
		}
	}

	cookie = bpf_get_socket_cookie(ctx);
	now = bpf_ktime_get_ns();
	pick.backend_id = 0;

	/* 1. sessionAffinity ClientIP: the client is the network namespace (a pod), because the
	 *    source address of an unbound socket is not known yet. */
	struct sy_affinity_key akey = {};
	if (fe->flags & SY_FE_AFFINITY) {
		struct sy_affinity *a;
		__u64 netns = bpf_get_netns_cookie(ctx);

		__builtin_memcpy(akey.client.bytes, &netns, sizeof(netns));
		akey.frontend_id = fe->id;
		akey.family = SY_AF_NETNS_COOKIE;
		a = bpf_map_lookup_elem(&sy_affinity, &akey);
		if (a && sy_age_ns(now, a->last_used_ns) <= fe->affinity_timeout_s * NSEC_PER_SEC &&
		    choice_still_valid(fe, a)) {
			pick.backend_id = a->backend_id;
			pick.slot = a->slot;
			pick.reason = SY_REASON_TRANSLATED_AFFINITY;
		}
	}

	/* 2. Unconnected UDP: keep the backend this socket used before for this frontend. */
	struct sy_sock_sticky_key skey = {};
	if (pick.backend_id == 0 && is_sendmsg) {
		struct sy_affinity *s;

		skey.cookie = cookie;
		skey.frontend_id = fe->id;
		s = bpf_map_lookup_elem(&sy_sock_sticky, &skey);
		if (s && choice_still_valid(fe, s)) {
			pick.backend_id = s->backend_id;
			pick.slot = s->slot;
			pick.reason = SY_REASON_TRANSLATED_STICKY;
		}
	}

	/* 3. A fresh choice. */
	if (pick.backend_id == 0) {
		err = pick_backend(fe, cookie, &pick);
		if (err < 0) {
			count((__u32)-err);
			sock_event((__u32)-err, 1, fe->id, 0, &dst, port, proto, family, cookie);
			bpf_set_retval(-SY_ECONNREFUSED);
			return SY_REJECT;
		}
	}

	be = bpf_map_lookup_elem(&sy_backends, &pick.backend_id);
	if (!be || be->family != family) {
		count(SY_REASON_ERR_BACKEND_MISSING);
		sock_event(SY_REASON_ERR_BACKEND_MISSING, 1, fe->id, pick.backend_id, &dst, port, proto,
			   family, cookie);
		bpf_set_retval(-SY_ECONNREFUSED);
		return SY_REJECT;
	}

	/* Source ranges, source not known yet: the socket's next packet is checked (see
	 * sy_sock_egress). Without storage for the mark the call is refused rather than let
	 * through unchecked. */
	if ((fe->flags & SY_FE_SOURCE_RANGES) && !src_known) {
		struct sy_sock_src_check *c = bpf_sk_storage_get(
			&sy_sock_src_check, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

		if (!c) {
			count(SY_REASON_DROP_SOURCE_RANGE_SOCK);
			bpf_set_retval(-SY_ECONNREFUSED);
			return SY_REJECT;
		}
		c->frontend_id = fe->id;
		c->pending = 1;
	}

	/* Remember the choice (refreshes the affinity timer on every use). */
	struct sy_affinity remembered = {};
	remembered.backend_id = pick.backend_id;
	remembered.slot = pick.slot;
	remembered.last_used_ns = now;
	if (fe->flags & SY_FE_AFFINITY)
		bpf_map_update_elem(&sy_affinity, &akey, &remembered, BPF_ANY);
	if (is_sendmsg) {
		skey.cookie = cookie;
		skey.frontend_id = fe->id;
		bpf_map_update_elem(&sy_sock_sticky, &skey, &remembered, BPF_ANY);
	}

	/* Reverse translation for recvmsg/getpeername. */
	struct sy_sock_revnat_key rkey = {};
	struct sy_sock_revnat rval = {};
	rkey.cookie = cookie;
	rkey.addr = be->addr;
	rkey.port = be->port;
	rkey.family = family;
	rval.addr = dst;
	rval.port = port;
	rval.family = family;
	rval.frontend_id = fe->id;
	if (bpf_map_update_elem(&sy_sock_revnat, &rkey, &rval, BPF_ANY) != 0)
		count(SY_REASON_ERR_REVNAT_UPDATE);

	if (is_v6) {
		ctx->user_ip6[0] = be->addr.words[0];
		ctx->user_ip6[1] = be->addr.words[1];
		ctx->user_ip6[2] = be->addr.words[2];
		ctx->user_ip6[3] = be->addr.words[3];
	} else {
		ctx->user_ip4 = be->addr.words[3];
	}
	ctx->user_port = (__u32)be->port;
	count(pick.reason);
	/* A sticky pick is a later datagram of a flow already counted. */
	if (pick.reason != SY_REASON_TRANSLATED_STICKY) {
		sy_count_frontend(fe->id, 1, 0, 0);
		sock_event(pick.reason, 0, fe->id, pick.backend_id, &dst, port, proto, family,
			   cookie);
	}
	return SY_ALLOW;
}

/* Rewrite a backend peer back into the frontend the socket asked for. Always allows. */
static __always_inline int reverse(struct bpf_sock_addr *ctx, int is_v6, __u32 reason)
{
	struct sy_sock_revnat_key key = {};
	struct sy_sock_revnat *orig;

	key.cookie = bpf_get_socket_cookie(ctx);
	if (is_v6) {
		key.addr.words[0] = ctx->user_ip6[0];
		key.addr.words[1] = ctx->user_ip6[1];
		key.addr.words[2] = ctx->user_ip6[2];
		key.addr.words[3] = ctx->user_ip6[3];
		key.family = addr_is_v4_mapped(&key.addr) ? SY_AF_INET : SY_AF_INET6;
	} else {
		addr_from_ip4(&key.addr, ctx->user_ip4);
		key.family = SY_AF_INET;
	}
	key.port = (__be16)ctx->user_port;

	orig = bpf_map_lookup_elem(&sy_sock_revnat, &key);
	if (!orig)
		return SY_ALLOW;
	if (is_v6) {
		ctx->user_ip6[0] = orig->addr.words[0];
		ctx->user_ip6[1] = orig->addr.words[1];
		ctx->user_ip6[2] = orig->addr.words[2];
		ctx->user_ip6[3] = orig->addr.words[3];
	} else {
		ctx->user_ip4 = orig->addr.words[3];
	}
	ctx->user_port = (__u32)orig->port;
	count(reason);
	return SY_ALLOW;
}

SEC("cgroup/connect4")
int sy_connect4(struct bpf_sock_addr *ctx)
{
	return translate(ctx, 0, 0);
}

SEC("cgroup/connect6")
int sy_connect6(struct bpf_sock_addr *ctx)
{
	return translate(ctx, 1, 0);
}

SEC("cgroup/sendmsg4")
int sy_sendmsg4(struct bpf_sock_addr *ctx)
{
	return translate(ctx, 0, 1);
}

SEC("cgroup/sendmsg6")
int sy_sendmsg6(struct bpf_sock_addr *ctx)
{
	return translate(ctx, 1, 1);
}

SEC("cgroup/recvmsg4")
int sy_recvmsg4(struct bpf_sock_addr *ctx)
{
	return reverse(ctx, 0, SY_REASON_REVNAT_RECVMSG);
}

SEC("cgroup/recvmsg6")
int sy_recvmsg6(struct bpf_sock_addr *ctx)
{
	return reverse(ctx, 1, SY_REASON_REVNAT_RECVMSG);
}

SEC("cgroup/getpeername4")
int sy_getpeername4(struct bpf_sock_addr *ctx)
{
	return reverse(ctx, 0, SY_REASON_REVNAT_GETPEERNAME);
}

SEC("cgroup/getpeername6")
int sy_getpeername6(struct bpf_sock_addr *ctx)
{
	return reverse(ctx, 1, SY_REASON_REVNAT_GETPEERNAME);
}

/*
 * A connected socket is going away: forget its reverse-translation entry (and a sticky entry
 * for it, if any) instead of leaving it to LRU eviction, so churn of short-lived connections
 * does not push out the entries of long-lived ones. Unconnected UDP sockets have no
 * destination here; their entries age out of the LRU maps.
 */
SEC("cgroup/sock_release")
int sy_sock_release(struct bpf_sock *sk)
{
	struct sy_sock_revnat_key key = {};
	struct sy_sock_sticky_key sticky = {};
	struct sy_sock_revnat *orig;

	if (sk->family == SY_AF_INET) {
		if (sk->dst_ip4 == 0)
			return 1;
		addr_from_ip4(&key.addr, sk->dst_ip4);
		key.family = SY_AF_INET;
	} else if (sk->family == SY_AF_INET6) {
		key.addr.words[0] = sk->dst_ip6[0];
		key.addr.words[1] = sk->dst_ip6[1];
		key.addr.words[2] = sk->dst_ip6[2];
		key.addr.words[3] = sk->dst_ip6[3];
		key.family = addr_is_v4_mapped(&key.addr) ? SY_AF_INET : SY_AF_INET6;
	} else {
		return 1;
	}
	key.port = sk->dst_port;
	if (key.port == 0)
		return 1;
	key.cookie = bpf_get_socket_cookie(sk);
	orig = bpf_map_lookup_elem(&sy_sock_revnat, &key);
	if (!orig)
		return 1;
	sticky.cookie = key.cookie;
	sticky.frontend_id = orig->frontend_id;
	bpf_map_delete_elem(&sy_sock_sticky, &sticky);
	bpf_map_delete_elem(&sy_sock_revnat, &key);
	count(SY_REASON_SOCK_RELEASED);
	return 1;
}

/*
 * Every packet sockets of the cgroup send: the first packet of a socket marked by translate()
 * has its (routed) source checked against the frontend's loadBalancerSourceRanges. Allowed:
 * the mark is cleared (a connected socket keeps its source). Refused: dropped and counted,
 * and the mark stays, so retransmissions are dropped too.
 */
SEC("cgroup_skb/egress")
int sy_sock_egress(struct __sk_buff *skb)
{
	struct sy_sock_src_check *c;
	struct sy_addr saddr = {};
	struct bpf_sock *sk = skb->sk;
	struct sy_event *ev;
	__u32 ip4;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	c = bpf_sk_storage_get(&sy_sock_src_check, sk, 0, 0);
	/* A UDP socket's first datagram (a pod's DNS query, typically its first packet at all)
	 * shows the namespace's source once per socket; TCP is learned by sy_sock_ops. */
	if (!c && sk->protocol == IPPROTO_UDP)
		c = bpf_sk_storage_get(&sy_sock_src_check, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!c || (!c->pending && c->learned))
		return 1;
	if (skb->protocol == bpf_htons(SY_ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 12, &ip4, sizeof(ip4)))
			return 1;
		addr_from_ip4(&saddr, ip4);
	} else if (skb->protocol == bpf_htons(SY_ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 8, &saddr, sizeof(saddr)))
			return 1;
	} else {
		return 1;
	}
	if (!c->learned) {
		learn_netns_source(bpf_get_netns_cookie(skb), &saddr);
		c->learned = 1;
	}
	if (!c->pending)
		return 1;
	if (source_in_ranges(c->frontend_id, &saddr)) {
		c->pending = 0;
		return 1;
	}
	count(SY_REASON_DROP_SOURCE_RANGE_SOCK);
	ev = sy_event_start(1, SY_REASON_DROP_SOURCE_RANGE_SOCK, SY_PATH_SOCK, c->frontend_id, 0);
	if (ev) {
		ev->cookie = bpf_get_socket_cookie(skb);
		ev->saddr = saddr;
		ev->family = addr_is_v4_mapped(&saddr) ? SY_AF_INET : SY_AF_INET6;
		bpf_ringbuf_submit(ev, 0);
	}
	return 0;
}

/*
 * Learns the namespace's source address from each TCP connect (the source is chosen by then)
 * and each accepted connection (the address the pod is reached at): see sy_netns_src. It
 * changes nothing for the socket.
 */
SEC("sockops")
int sy_sock_ops(struct bpf_sock_ops *ops)
{
	struct sy_addr local = {};

	if (ops->op != BPF_SOCK_OPS_TCP_CONNECT_CB && ops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (ops->family == SY_AF_INET) {
		addr_from_ip4(&local, ops->local_ip4);
	} else if (ops->family == SY_AF_INET6) {
		local.words[0] = ops->local_ip6[0];
		local.words[1] = ops->local_ip6[1];
		local.words[2] = ops->local_ip6[2];
		local.words[3] = ops->local_ip6[3];
	} else {
		return 1;
	}
	if ((local.words[0] | local.words[1] | local.words[2] | local.words[3]) == 0 ||
	    (addr_is_v4_mapped(&local) && local.words[3] == 0))
		return 1;
	learn_netns_source(bpf_get_netns_cookie(ops), &local);
	return 1;
}
