/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctx.h - the packet context of the per-packet libs, so the TC programs (struct __sk_buff,
 * c/nodeport.bpf.c) and the XDP program (struct xdp_md, c/nodeport_xdp.bpf.c) share parsing,
 * conntrack, NAT, SNAT and the new-flow decision instead of copying them (Cilium's ctx_* and
 * __ctx_buff play the same part). A program file defines SY_CTX_XDP before its first include
 * for the XDP flavour. The libs name the context `struct __ctx_buff` (their parameters keep
 * the name skb) and reach the packet only through the ctx_* functions below.
 */
#ifndef SY_LIB_CTX_H
#define SY_LIB_CTX_H

#include "common.h"
#include <linux/pkt_cls.h>

#ifdef SY_CTX_XDP

#define __ctx_buff xdp_md
#define CTX_ACT_OK XDP_PASS
#define CTX_ACT_DROP XDP_DROP

/* Frames are at most a page (no multi-buffer): offsets are bounded by this, which also lets the
 * verifier check direct packet access at a variable offset. */
#define SY_XDP_MAX_OFF 4095

/* Direct packet access (a copy of len bytes, len a constant at every call site): XDP's frame
 * is one linear buffer, and a load or store here costs an instruction where the
 * bpf_xdp_load_bytes / store_bytes helpers cost a call each. */
static __always_inline int ctx_load_bytes(struct xdp_md *ctx, __u32 off, void *to, __u32 len)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;

	if (!__builtin_constant_p(len)) /* SCTP's CRC chunks */
		return bpf_xdp_load_bytes(ctx, off, to, len);
	if (off > SY_XDP_MAX_OFF || data + off + len > end)
		return -1;
	__builtin_memcpy(to, data + off, len);
	return 0;
}

static __always_inline int ctx_store_bytes(struct xdp_md *ctx, __u32 off, const void *from,
					   __u32 len, __u64 flags)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;

	if (!__builtin_constant_p(len))
		return bpf_xdp_store_bytes(ctx, off, (void *)from, len);
	if (off > SY_XDP_MAX_OFF || data + off + len > end)
		return -1;
	__builtin_memcpy(data + off, from, len);
	return 0;
}

/* The frame's length (the program is loaded without multi-buffer support: one linear
 * buffer). */
static __always_inline __u32 ctx_len(const struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data;
}

static __always_inline __u32 ctx_ingress_ifindex(const struct xdp_md *ctx)
{
	return ctx->ingress_ifindex;
}

/* A frame in XDP carries no VLAN tag outside its data: parse() finds a tag in the data. */
static __always_inline int ctx_vlan_present(const struct xdp_md *ctx)
{
	return 0;
}

/* Adds the one's-complement difference `diff` (a bpf_csum_diff() sum) to the 16-bit checksum
 * at off (RFC 1624). A frame in XDP holds complete checksums (the XDP program hands frames
 * that carry only a pseudo-header sum to TC, xdp_l4_csum_partial()), so BPF_F_PSEUDO_HDR has
 * nothing to do here. mangled_0: a zero UDP checksum means "none" and stays, a computed zero
 * is written as 0xffff (BPF_F_MARK_MANGLED_0). */
static __always_inline int xdp_csum_add(struct xdp_md *ctx, __u32 off, __u32 diff, int mangled_0)
{
	__u16 c;
	__u64 s;

	if (ctx_load_bytes(ctx, off, &c, 2))
		return -1;
	if (mangled_0 && c == 0)
		return 0;
	s = (__u64)(__u16)~c + diff;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	c = ~(__u16)s;
	if (mangled_0 && c == 0)
		c = 0xffff;
	return ctx_store_bytes(ctx, off, &c, 2, 0);
}

/* bpf_l3_csum_replace / bpf_l4_csum_replace for XDP: flags' low 4 bits are the size of the
 * replaced field (2 or 4, as the values sit in memory), or 0 when `to` is a bpf_csum_diff()
 * sum to add (the IPv6 address case). */
static __always_inline int xdp_csum_replace(struct xdp_md *ctx, __u32 off, __u64 from, __u64 to,
					    __u64 flags)
{
	__u32 size = flags & BPF_F_HDR_FIELD_MASK, f, t;
	__s64 diff;

	if (size == 0) {
		diff = (__u32)to;
	} else {
		f = size == 2 ? (__u32)(__u16)from : (__u32)from;
		t = size == 2 ? (__u32)(__u16)to : (__u32)to;
		diff = bpf_csum_diff(&f, 4, &t, 4, 0);
		if (diff < 0)
			return -1;
	}
	return xdp_csum_add(ctx, off, (__u32)diff, (flags & BPF_F_MARK_MANGLED_0) != 0);
}

static __always_inline int ctx_l3_csum_replace(struct xdp_md *ctx, __u32 off, __u64 from,
					       __u64 to, __u64 flags)
{
	return xdp_csum_replace(ctx, off, from, to, flags);
}

static __always_inline int ctx_l4_csum_replace(struct xdp_md *ctx, __u32 off, __u64 from,
					       __u64 to, __u64 flags)
{
	return xdp_csum_replace(ctx, off, from, to, flags);
}

#else /* TC */

#define __ctx_buff __sk_buff
#define CTX_ACT_OK TC_ACT_OK
#define CTX_ACT_DROP TC_ACT_SHOT

static __always_inline int ctx_load_bytes(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes(skb, off, to, len);
}

static __always_inline int ctx_store_bytes(struct __sk_buff *skb, __u32 off, const void *from,
					   __u32 len, __u64 flags)
{
	return bpf_skb_store_bytes(skb, off, from, len, flags);
}

static __always_inline __u32 ctx_len(const struct __sk_buff *skb)
{
	return skb->len;
}

/* The device the packet came in on (egress: the device it leaves by). */
static __always_inline __u32 ctx_ingress_ifindex(const struct __sk_buff *skb)
{
	return skb->ingress_ifindex ? skb->ingress_ifindex : skb->ifindex;
}

/* The stack moves a VLAN tag into the skb before TC ingress. */
static __always_inline int ctx_vlan_present(const struct __sk_buff *skb)
{
	return skb->vlan_present;
}

static __always_inline int ctx_l3_csum_replace(struct __sk_buff *skb, __u32 off, __u64 from,
					       __u64 to, __u64 flags)
{
	return bpf_l3_csum_replace(skb, off, from, to, flags);
}

static __always_inline int ctx_l4_csum_replace(struct __sk_buff *skb, __u32 off, __u64 from,
					       __u64 to, __u64 flags)
{
	return bpf_l4_csum_replace(skb, off, from, to, flags);
}

#endif /* SY_CTX_XDP */

#endif /* SY_LIB_CTX_H */
