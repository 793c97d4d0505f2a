/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_restore.bpf.c - for benches/director.rs only (not embedded, never loaded by
 * Switchyard). BPF_PROG_TEST_RUN with a plain `repeat` runs an XDP program again and again on
 * the same xdp_buff, so an encapsulating program would see its own output from the second run
 * on. Where the kernel refuses live frames (which reset the frame per run), the bench runs
 * sy_bench_restore instead: it puts the frame back as the bench gave it, then tail-calls the
 * program under test (slot 0 of sy_bench_next). The peer is the same restore tail-calling
 * sy_bench_tx, which only returns XDP_TX: the difference is the program's own work.
 *
 * What is put back: the length (bpf_xdp_adjust_head by the difference; 0 for the peer, so both
 * make the same helper call), and the first 14 bytes (the Ethernet header): an encapsulation
 * pushes its headers in front of the frame and overwrites at most the client's Ethernet
 * header, never the IP packet behind it.
 */
#include "lib/common.h"

char LICENSE[] SEC("license") = "GPL";

/* The frame as the bench gives it (benches/director.rs BenchFrame). */
struct sy_bench_frame {
	__u32 len;    /* the frame's length */
	__u32 pad;
	__u8 head[16] __attribute__((aligned(8))); /* its first 14 bytes */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sy_bench_frame);
} sy_bench_frame SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} sy_bench_next SEC(".maps");

SEC("xdp")
int sy_bench_restore(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct sy_bench_frame *f;
	__u32 zero = 0;

	f = bpf_map_lookup_elem(&sy_bench_frame, &zero);
	if (!f)
		return XDP_ABORTED;
	if (bpf_xdp_adjust_head(ctx, (int)((long)(end - data) - (long)f->len)))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + 14 > end)
		return XDP_ABORTED;
	*(__u64 *)data = *(const __u64 *)f->head;
	*(__u32 *)(data + 8) = *(const __u32 *)(f->head + 8);
	*(__u16 *)(data + 12) = *(const __u16 *)(f->head + 12);
	bpf_tail_call(ctx, &sy_bench_next, 0);
	return XDP_ABORTED; /* slot 0 empty */
}

/* The peer: the least any XDP load balancer does. */
SEC("xdp")
int sy_bench_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}
