# One throwaway variant of c/director.bpf.c without one part, for scripts/director-cost-parts:
# `director_variants.py PART FILE` rewrites FILE in place. The variants keep the frame valid
# (the bench's live frames go out again); they are for measuring only, never for use.
import sys
v = sys.argv[1]
p = sys.argv[2]
s = open(p).read()
# The flow hash's line in the program.
HASH = 'hash = sy_flow_hash_prefixed(cfg->hash_k0, cfg->hash_k1, &vip->hash, &pp->flow);'
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
    rep(HASH, 'hash = (__u64)pp->flow.sport * 0x9e3779b97f4a7c15ULL;')
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
    # The flow hash from scratch as a BPF-to-BPF call (the node programs' sy_flow_hash).
    rep(HASH, 'hash = sy_flow_hash_slow(cfg->hash_k0, cfg->hash_k1, &pp->flow);')
elif v == 'scratch_hash':
    # The flow hash from scratch, inlined (the same value): what the VIP's prefix saves.
    rep(HASH, 'hash = sy_flow_hash_key(cfg->hash_k0, cfg->hash_k1, &pp->flow);')
elif v in ('sip13', 'sip24'):
    # The flow hash (from the VIP's prefix) with other rounds per word and to finish: what
    # the rounds cost (values differ from the mirror's; the bench checks only the verdicts
    # and that the output frame is the director's own).
    c, d = v[3], v[4]
    rep('#include "lib/common.h"', '#define SY_FLOW_C_ROUNDS %s\n#define SY_FLOW_D_ROUNDS %s\n#include "lib/common.h"' % (c, d))
else:
    raise SystemExit('unknown part ' + v)
open(p, 'w').write(s)
