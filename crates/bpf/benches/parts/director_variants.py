# One throwaway variant of c/director.bpf.c without one part, for scripts/director-cost-parts:
# `director_variants.py PART FILE` rewrites FILE in place. The variants keep the frame valid
# (the bench's live frames go out again); they are for measuring only, never for use.
import sys
v = sys.argv[1]
p = sys.argv[2]
s = open(p).read()
def rep(a, b):
    global s
    assert a in s, (v, a)
    s = s.replace(a, b)
if v == 'base':
    pass
elif v == 'no_id_counters':
    rep('\tsy_dir_count_id(&sy_dir_vip_counters, d->vip_id, p->ip_len);\n', '')
    rep('\tsy_dir_count_id(&sy_dir_node_counters, d->node_id, p->ip_len);\n', '')
elif v == 'no_siphash':
    rep('hash = sy_flow_hash_inline(&hash_key, &pp->flow);', 'hash = (__u64)pp->flow.sport * 0x9e3779b97f4a7c15ULL;')
elif v == 'no_modulo':
    rep('slot = (__u32)(hash % cfg->table_size);', 'slot = (__u32)hash & 127;')
elif v == 'no_monitor':
    rep('struct sy_event *ev = sy_event_start(is_drop, reason, SY_PATH_DIR, d->vip_id, d->node_id);', 'struct sy_event *ev = 0;')
elif v == 'no_reason_counter':
    rep('''static __always_inline void dir_decided(const struct dir_flow *d, __u32 reason)
{
	sy_dir_count(reason, d->p.ip_len);''', '''static __always_inline void dir_decided(const struct dir_flow *d, __u32 reason)
{''')
elif v == 'no_vip_lookup':
    rep('vip = sy_dir_vip_lookup(cfg, &key);', 'struct sy_dir_vip fv = { .id = key.family == SY_AF_INET ? 1 : 2, .table_id = key.family == SY_AF_INET ? 1 : 2 }; vip = &fv;')
elif v == 'no_push':
    rep('''	if (encap_push(ctx, r->hdr, r->csum, &h, overhead, v4, proto))
		return dir_drop(d, SY_DIR_DROP_RESIZE);''', '')
elif v == 'no_route':
    # The route cache's check (tags, length, deadline) skipped: the entry is looked up (it
    # holds the outer header template) and filled only while empty.
    rep('''	if (!dir_route_for(ctx, r, src, &node->addr, p->ip_len + overhead) ||
	    !dir_route_fresh(r)) {''', '''	if (r->expires_ns == 0) {''')
    rep('static __always_inline int dir_route_fresh', 'static SY_NOINLINE int dir_route_fresh')
elif v == 'coarse_clock':
    # The route cache's deadline checked with the coarse clock on every packet (a helper
    # call), as before session 25, instead of once per jiffies tick.
    rep('''	    !dir_route_fresh(r)) {''', '''	    bpf_ktime_get_coarse_ns() >= r->expires_ns) {''')
    rep('static __always_inline int dir_route_fresh', 'static SY_NOINLINE int dir_route_fresh')
elif v == 'no_node_lookup':
    rep('''	node = bpf_map_lookup_elem(&sy_dir_nodes, node_id);''', '''	struct sy_dir_node fnode = {}; fnode.family = pp->flow.family; if (fnode.family == SY_AF_INET) { fnode.addr.words[2] = bpf_htonl(0xffff); fnode.addr.words[3] = bpf_htonl(0x0a000800); } else { fnode.addr.words[0] = bpf_htonl(0xfd000000); fnode.addr.words[3] = bpf_htonl(0x86dd); } node = &fnode;''')
elif v == 'noinline_hash':
    # The flow hash as a BPF-to-BPF call (the node programs' sy_flow_hash).
    rep('hash = sy_flow_hash_inline(&hash_key, &pp->flow);', 'hash = sy_flow_hash(&hash_key, &pp->flow);')
elif v == 'old_hash':
    # The flow hash as before session 17 (and as the byte-wise reference): a BPF-to-BPF call,
    # message bytes copied to the stack, words assembled byte by byte.
    rep('SEC("xdp")', '''static SY_NOINLINE __u64 old_flow_hash(const struct sy_config *cfg, const struct sy_ct_key *t)
{
	if (t->family == SY_AF_INET) {
		__u8 msg[13];
		__builtin_memcpy(msg, &t->saddr.words[3], 4);
		__builtin_memcpy(msg + 4, &t->daddr.words[3], 4);
		__builtin_memcpy(msg + 8, &t->sport, 2);
		__builtin_memcpy(msg + 10, &t->dport, 2);
		msg[12] = t->proto;
		return sy_siphash24(cfg->hash_k0, cfg->hash_k1, msg, 13);
	} else {
		__u8 msg[37];
		__builtin_memcpy(msg, t->saddr.bytes, 16);
		__builtin_memcpy(msg + 16, t->daddr.bytes, 16);
		__builtin_memcpy(msg + 32, &t->sport, 2);
		__builtin_memcpy(msg + 34, &t->dport, 2);
		msg[36] = t->proto;
		return sy_siphash24(cfg->hash_k0, cfg->hash_k1, msg, 37);
	}
}

SEC("xdp")''')
    rep('hash = sy_flow_hash_inline(&hash_key, &pp->flow);', 'hash = old_flow_hash(&hash_key, &pp->flow);')
elif v == 'sip13':
    # The flow hash with SipHash-1-3 (one round per word, three to finish: Rust's std
    # hasher) instead of 2-4: what a cheaper keyed hash would save (values differ).
    rep('SEC("xdp")', '''static __always_inline __u64 sip13_flow_hash(const struct sy_config *cfg, const struct sy_ct_key *t)
{
	__u64 tail = (__u64)t->sport | (__u64)t->dport << 16 | (__u64)t->proto << 32;
	const __u32 *s = t->saddr.words, *d = t->daddr.words;
#define W13(w) do { __u64 w_ = (w); v3 ^= w_; SY_SIPROUND(v0, v1, v2, v3); v0 ^= w_; } while (0)
	SY_SIP_START(cfg->hash_k0, cfg->hash_k1);
	if (t->family == SY_AF_INET) {
		W13((__u64)s[3] | (__u64)d[3] << 32);
		W13(tail | 13ull << 56);
	} else {
		W13((__u64)s[0] | (__u64)s[1] << 32);
		W13((__u64)s[2] | (__u64)s[3] << 32);
		W13((__u64)d[0] | (__u64)d[1] << 32);
		W13((__u64)d[2] | (__u64)d[3] << 32);
		W13(tail | 37ull << 56);
	}
	v2 ^= 0xff;
	SY_SIPROUND(v0, v1, v2, v3);
	SY_SIPROUND(v0, v1, v2, v3);
	SY_SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

SEC("xdp")''')
    rep('hash = sy_flow_hash_inline(&hash_key, &pp->flow);', 'hash = sip13_flow_hash(&hash_key, &pp->flow);')
elif v == 'bytewise_hash':
    # The flow hash as before session 17: message bytes copied, words assembled byte by byte.
    rep('hash = sy_flow_hash_inline(&hash_key, &pp->flow);', '''if (pp->flow.family == SY_AF_INET) {
		__u8 msg[13];
		__builtin_memcpy(msg, &pp->flow.saddr.words[3], 4);
		__builtin_memcpy(msg + 4, &pp->flow.daddr.words[3], 4);
		__builtin_memcpy(msg + 8, &pp->flow.sport, 2);
		__builtin_memcpy(msg + 10, &pp->flow.dport, 2);
		msg[12] = pp->flow.proto;
		hash = sy_siphash24(hash_key.hash_k0, hash_key.hash_k1, msg, 13);
	} else {
		__u8 msg[37];
		__builtin_memcpy(msg, pp->flow.saddr.bytes, 16);
		__builtin_memcpy(msg + 16, pp->flow.daddr.bytes, 16);
		__builtin_memcpy(msg + 32, &pp->flow.sport, 2);
		__builtin_memcpy(msg + 34, &pp->flow.dport, 2);
		msg[36] = pp->flow.proto;
		hash = sy_siphash24(hash_key.hash_k0, hash_key.hash_k1, msg, 37);
	}''')
else:
    raise SystemExit('unknown part ' + v)
open(p, 'w').write(s)
