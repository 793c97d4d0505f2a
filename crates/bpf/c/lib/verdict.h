/* SPDX-License-Identifier: Apache-2.0 */
/*
 * verdict.h - how the per-packet path ends a packet it does not forward: drop (counted, with a
 * monitor event: the one place a packet is dropped), or send an answer back out.
 */
#ifndef SY_LIB_VERDICT_H
#define SY_LIB_VERDICT_H

#include <linux/pkt_cls.h>
#include "parse.h"
#include "counters.h"
#include "events.h"

#ifndef SY_CTX_XDP
/* Send the answer now in the packet back where the original came from. */
static __always_inline int send_back(struct __sk_buff *skb, __u32 reason)
{
	sy_count(reason, skb->len);
	return bpf_redirect(skb->ifindex, 0);
}
#endif

/* Tells the monitor (when on and sampled) what happened to p. */
static SY_NOINLINE void pkt_event(const struct pkt *p, __u32 reason, __u32 frontend_id,
				  __u32 backend_id, __u32 len)
{
	int is_drop = reason != SY_REASON_PKT_DNAT && reason != SY_REASON_PKT_DNAT_SNAT &&
		      reason != SY_REASON_PKT_DNAT_DSR;
	struct sy_event *ev = sy_event_start(is_drop, reason, SY_PATH_PKT, frontend_id, backend_id);

	if (!ev)
		return;
	ev->len = len;
	ev->saddr = p->t.saddr;
	ev->daddr = p->t.daddr;
	ev->sport = p->t.sport;
	ev->dport = p->t.dport;
	ev->proto = p->t.proto;
	ev->family = p->t.family;
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline int drop(struct __ctx_buff *skb, const struct pkt *p, __u32 reason)
{
	sy_count(reason, ctx_len(skb));
	pkt_event(p, reason, 0, 0, ctx_len(skb));
	return CTX_ACT_DROP;
}

#endif /* SY_LIB_VERDICT_H */
