/* SPDX-License-Identifier: Apache-2.0 */
/*
 * switchyard.h - the ONE definition of every struct, enum and constant shared between the BPF
 * programs (c/NAME.bpf.c) and user space (crates/bpf/src/abi.rs mirrors these with #[repr(C)];
 * tests/layout.rs asserts sizes, offsets and constant values against this file).
 *
 * Rules for every shared struct:
 *  - fixed-width types only, explicit padding fields (always zero), no implicit holes;
 *  - ports are in network byte order (__be16), everything else in host order;
 *  - addresses use struct sy_addr: IPv6 as is, IPv4 as an IPv4-mapped IPv6 address
 *    (::ffff:a.b.c.d). One representation means one code path for both families, and a
 *    v4-mapped destination on a dual-stack socket looks up the same entry as plain IPv4.
 *    The family field next to an address must agree with it (SY_AF_INET for mapped ones).
 *
 * Nothing here but the ABI: constants, enums and structs, each checked by the layout probe
 * (c/layout_probe.c, c/layout_probe_nodeport.c). The code that uses them lives in c/lib/, the
 * maps in c/lib/maps.h and c/lib/nodeport_maps.h. See docs/datapath.md for what each map
 * holds and who writes it.
 */
#ifndef SWITCHYARD_H
#define SWITCHYARD_H

#include <linux/types.h>

/* ---- address families (values of the Linux AF_* constants) ---- */
#define SY_AF_INET 2
#define SY_AF_INET6 10
/* Affinity key only: client.bytes[0..8] holds a network-namespace cookie, not an address. */
#define SY_AF_NETNS_COOKIE 255

/* ---- frontend scopes ---- */
/* The entry every path uses. */
#define SY_SCOPE_DEFAULT 0
/* A second entry for traffic from inside the cluster, present only when the frontend has
 * SY_FE_SPLIT_SCOPE (internal and external traffic policies select different backends). */
#define SY_SCOPE_INTERNAL 1

/* ---- frontend flags (struct sy_frontend.flags) ---- */
/* sessionAffinity ClientIP: reuse the backend in sy_affinity for affinity_timeout_s. */
#define SY_FE_AFFINITY (1u << 0)
/* Select with the frontend's Maglev table in sy_maglev instead of a random slot. */
#define SY_FE_MAGLEV (1u << 1)
/* Per-packet path: with no backends answer with TCP RST / ICMP unreachable instead of a
 * silent drop. The socket path always refuses (ECONNREFUSED) when there are no backends. */
#define SY_FE_REJECT_EMPTY (1u << 2)
/* The backend set was narrowed to node-local endpoints (internal/external traffic policy
 * Local). Informational for the socket path; the per-packet path keeps the client address. */
#define SY_FE_LOCAL_ONLY (1u << 3)
/* The slots hold serving-but-terminating backends because no ready one exists. */
#define SY_FE_TERMINATING_FALLBACK (1u << 4)
/* An SY_SCOPE_INTERNAL entry exists for the same address/port/protocol. */
#define SY_FE_SPLIT_SCOPE (1u << 5)
/* NodePort wildcard: key address is all-zero and matches any node-local address
 * (sy_node_addrs, and loopback). */
#define SY_FE_NODEPORT (1u << 6)
/* Per-packet path: check the client against loadBalancerSourceRanges (reserved, issue 6). */
#define SY_FE_SOURCE_RANGES (1u << 7)

/* ---- backend flags (struct sy_backend.flags) ---- */
/* Endpoint is terminating: existing flows keep it, new ones avoid it unless in fallback. */
#define SY_BE_TERMINATING (1u << 0)
/* Endpoint runs on this node. */
#define SY_BE_LOCAL (1u << 1)
/* Reach the backend through the tunnel named by tunnel_id (GUE / IPIP, reserved). */
#define SY_BE_ENCAP (1u << 2)

/* ---- sy_config.flags ---- */
/* Reserved; zero today. */
#define SY_CFG_NONE 0u

/* Slot value meaning "not chosen through a slot" (Maglev picks) in struct sy_affinity. */
#define SY_SLOT_NONE 0xffffffffu

/* Default Maglev table size M (prime). The actual size is sy_config.maglev_table_size. */
#define SY_MAGLEV_DEFAULT_TABLE_SIZE 16381

/* ---- decisions and drop reasons: index into sy_counters ---- */
enum sy_reason {
	/* connect/sendmsg to an address that is not a frontend: left alone (not counted). */
	SY_REASON_NOT_SERVICE = 0,
	/* Translated to a backend picked at random from the slots. */
	SY_REASON_TRANSLATED_RANDOM = 1,
	/* Translated to the backend of the frontend's Maglev table. */
	SY_REASON_TRANSLATED_MAGLEV = 2,
	/* Translated to the backend remembered in sy_affinity (ClientIP). */
	SY_REASON_TRANSLATED_AFFINITY = 3,
	/* Unconnected UDP: translated to the backend this socket used before (sy_sock_sticky). */
	SY_REASON_TRANSLATED_STICKY = 4,
	/* Frontend has no backends: the socket call fails with ECONNREFUSED. */
	SY_REASON_REJECT_NO_BACKEND = 5,
	/* Frontend has no backends and no SY_FE_REJECT_EMPTY (per-packet path): dropped. */
	SY_REASON_DROP_NO_BACKEND = 6,
	/* A slot below backend_count is missing: refused (reconciler invariant broken). */
	SY_REASON_ERR_SLOT_MISSING = 7,
	/* A slot or Maglev entry names a backend id that is not in sy_backends: refused. */
	SY_REASON_ERR_BACKEND_MISSING = 8,
	/* SY_FE_MAGLEV without a table in sy_maglev: refused. */
	SY_REASON_ERR_MAGLEV_MISSING = 9,
	/* sy_sock_revnat could not be written: translated anyway, replies keep backend source. */
	SY_REASON_ERR_REVNAT_UPDATE = 10,
	/* recvmsg: reply source rewritten from backend to frontend. */
	SY_REASON_REVNAT_RECVMSG = 11,
	/* getpeername: peer rewritten from backend to frontend. */
	SY_REASON_REVNAT_GETPEERNAME = 12,
	/* A connected, translated socket closed: its reverse-translation entry was removed. */
	SY_REASON_SOCK_RELEASED = 13,
	/* SY_FE_SOURCE_RANGES: a translated socket's packet from a source outside
	 * loadBalancerSourceRanges (cgroup_skb/egress): dropped (the syscall gets EPERM). */
	SY_REASON_DROP_SOURCE_RANGE_SOCK = 14,
	/* SY_FE_SOURCE_RANGES: the socket's source was known at connect()/sendmsg() (a bound
	 * socket, or a datagram's chosen source) and is outside the ranges: refused with
	 * ECONNREFUSED. */
	SY_REASON_REJECT_SOURCE_RANGE = 15,
	/* 16..31 reserved for the socket path, 32..63 for the per-packet path (issue 6). */
	SY_REASON_MAX = 64,
};

/* ---- shared structs ---- */

/* An IPv6 address, or an IPv4 address mapped into IPv6 (::ffff:a.b.c.d). */
struct sy_addr {
	union {
		__u8 bytes[16];
		__u32 words[4]; /* network byte order, as in struct in6_addr */
	};
};

/* sy_frontends key: one entry per (address, port, protocol[, scope]). */
struct sy_frontend_key {
	struct sy_addr addr; /* all-zero for a NodePort wildcard (SY_FE_NODEPORT) */
	__be16 port;         /* network byte order */
	__u8 proto;          /* IPPROTO_TCP, IPPROTO_UDP or IPPROTO_SCTP */
	__u8 family;         /* SY_AF_INET or SY_AF_INET6 */
	__u8 scope;          /* SY_SCOPE_DEFAULT or SY_SCOPE_INTERNAL */
	__u8 pad[3];         /* zero */
};

/* sy_frontends value. */
struct sy_frontend {
	__u32 id;                 /* nonzero, unique per entry: keys sy_slots, sy_maglev, ... */
	__u32 flags;              /* SY_FE_* */
	__u32 backend_count;      /* usable slots are 0 .. backend_count-1 in sy_slots */
	__u32 affinity_timeout_s; /* SY_FE_AFFINITY: seconds since last use before it expires */
};

/* sy_slots key: the slot-th usable backend of a frontend. Value: __u32 backend id. */
struct sy_slot_key {
	__u32 frontend_id;
	__u32 slot; /* 0 .. backend_count-1 */
};

/* sy_backends value, keyed by __u32 backend id (nonzero). */
struct sy_backend {
	struct sy_addr addr;
	__be16 port;     /* network byte order */
	__u8 family;     /* SY_AF_INET or SY_AF_INET6 */
	__u8 flags;      /* SY_BE_* */
	__u32 tunnel_id; /* SY_BE_ENCAP: tunnel endpoint id (reserved), else 0 */
};

/* sy_sock_revnat key: a translated socket and the backend it talks to. */
struct sy_sock_revnat_key {
	__u64 cookie;        /* bpf_get_socket_cookie() of the client socket */
	struct sy_addr addr; /* backend address */
	__be16 port;         /* backend port, network byte order */
	__u8 family;         /* SY_AF_INET or SY_AF_INET6 */
	__u8 pad[5];         /* zero */
};

/* sy_sock_revnat value: what the socket asked for, shown back by recvmsg/getpeername. */
struct sy_sock_revnat {
	struct sy_addr addr; /* frontend address */
	__be16 port;         /* frontend port, network byte order */
	__u8 family;
	__u8 pad;
	__u32 frontend_id;
};

/* sy_affinity key: ClientIP session affinity. */
struct sy_affinity_key {
	struct sy_addr client; /* client address, or netns cookie in bytes[0..8] */
	__u32 frontend_id;
	__u8 family; /* SY_AF_INET, SY_AF_INET6 or SY_AF_NETNS_COOKIE */
	__u8 pad[3];
};

/* sy_affinity and sy_sock_sticky value: a remembered backend choice. */
struct sy_affinity {
	__u32 backend_id;
	__u32 slot;          /* slot it was found in, or SY_SLOT_NONE; checked before reuse */
	__u64 last_used_ns;  /* bpf_ktime_get_ns() of the last use */
};

/* sy_sock_sticky key: unconnected UDP sockets keep one backend per frontend. */
struct sy_sock_sticky_key {
	__u64 cookie; /* socket cookie */
	__u32 frontend_id;
	__u32 pad; /* zero */
};

/* sy_node_addrs key: an address of this node (NodePort wildcard matches). Value: __u32 flags
 * (zero today). Loopback addresses always count as node addresses. */
struct sy_node_addr_key {
	struct sy_addr addr;
	__u8 family;
	__u8 pad[3];
};

/* sy_counters value (per CPU), indexed by enum sy_reason. */
struct sy_counter {
	__u64 packets; /* socket path: calls */
	__u64 bytes;   /* per-packet path only */
};

/* sy_fe_counters value (per CPU), keyed by __u32 frontend id: per-Service traffic for metrics.
 * Entries appear on first use (sy_count_frontend) and are removed by the reconciler or left
 * until the id is reused; readers sum over CPUs. */
struct sy_fe_counter {
	__u64 connections; /* new flows: connect / first sendmsg of a socket; per-packet new flows */
	__u64 packets;     /* per-packet path, both directions of translated flows */
	__u64 bytes;       /* per-packet path, skb->len (Ethernet header included) */
};

/* sy_config value, key 0: load-time settings written by the loader. */
struct sy_config {
	__u32 maglev_table_size; /* M: entries of every sy_maglev inner array */
	__u32 flags;             /* SY_CFG_* */
	__u64 hash_k0;           /* SipHash key, seed bytes 0..8 read little-endian */
	__u64 hash_k1;           /* SipHash key, seed bytes 8..16 read little-endian */
	/* The network namespace whose own loopback reaches NodePorts on the socket path (the
	 * node's: the agent's own); 0: none. A pod's 127.0.0.1:<nodePort> is its own, as with
	 * kube-proxy, whose rules never see a pod's loopback. */
	__u64 node_netns_cookie;
};

/* ---- monitor: a live stream of decisions and drops (switchyard monitor) ----
 * Off by default: the programs write to sy_events only while sy_monitor[0].enabled is set (the
 * monitor command sets it and clears it when it ends). Decisions are sampled 1 in
 * sample_every, drops 1 in drop_sample_every (0 and 1: every one), with bpf_get_prandom_u32. */
#define SY_PATH_SOCK 0 /* cgroup socket programs */
#define SY_PATH_PKT 1  /* TC per-packet programs */
#define SY_PATH_DIR 2  /* the director's XDP program (its own sy_monitor/sy_events) */
/* SY_PATH_DIR: sy_event.cookie before the flow's slot is known (no VIP table yet). */
#define SY_EVENT_NO_SLOT 0xffffffffffffffffull
#define SY_DEFAULT_EVENTS_BYTES 262144 /* sy_events ring buffer size (power of 2, pages) */

/* sy_monitor value, key 0: written by the monitor command. */
struct sy_monitor_config {
	__u32 enabled;
	__u32 sample_every;      /* decisions: 1 in N (0, 1: all) */
	__u32 drop_sample_every; /* drops and rejects: 1 in N (0, 1: all) */
	__u32 pad;
};

/* One sy_events record. SY_PATH_DIR (director): reason is an enum sy_dir_reason, frontend_id
 * the VIP id, backend_id the node id, cookie the Maglev slot, len the inner IP length. */
struct sy_event {
	__u64 ts_ns;       /* bpf_ktime_get_ns() */
	__u64 cookie;      /* socket path: socket cookie; per-packet path: 0; director: slot */
	__u32 reason;      /* enum sy_reason (director: enum sy_dir_reason) */
	__u32 frontend_id; /* 0: not known where the event was emitted */
	__u32 backend_id;  /* 0: none */
	__u32 len;         /* per-packet path: skb->len; socket path: 0 */
	struct sy_addr saddr; /* per-packet: client; socket: zero (connect knows no source) */
	struct sy_addr daddr; /* the destination as the client addressed it */
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 path; /* SY_PATH_* */
	__u8 pad;
};

/* ---- default map sizes: max_entries of the map definitions (c/lib/maps.h); the loader
 * overrides them by name (EbpfLoader::map_max_entries, MapSizes::default in Rust) ---- */
#define SY_DEFAULT_FRONTENDS 65536
#define SY_DEFAULT_SLOTS 1048576
#define SY_DEFAULT_BACKENDS 262144
#define SY_DEFAULT_SOCK_REVNAT 65536
#define SY_DEFAULT_AFFINITY 16384
#define SY_DEFAULT_STICKY 16384
#define SY_DEFAULT_MAGLEV 4096
#define SY_DEFAULT_NODE_ADDRS 256
#define SY_DEFAULT_FE_COUNTERS 65536

/* ======================================================================================
 * Per-packet path (issue 6): TC programs in c/nodeport.bpf.c for NodePort, LoadBalancer and
 * ExternalIP traffic arriving on the node's devices. Everything below is additive; the maps
 * of c/lib/maps.h (frontends, slots, backends, maglev, affinity, node_addrs, counters, config) are
 * shared with the socket path, so one reconciler programs both.
 * ====================================================================================== */

/* Counter indexes of the per-packet path (enum sy_reason reserves 32..63 for it). The
 * socket-path reasons SY_REASON_DROP_NO_BACKEND, _ERR_SLOT_MISSING, _ERR_BACKEND_MISSING and
 * _ERR_MAGLEV_MISSING are counted by the per-packet path too (it drops where the socket path
 * refuses). */
enum sy_pkt_reason {
	/* New flow DNATed to a backend, client address kept (local backend, ETP Local). */
	SY_REASON_PKT_DNAT = 32,
	/* New flow DNATed to a remote backend and SNATed to this node's address. */
	SY_REASON_PKT_DNAT_SNAT = 33,
	/* Packet of a known flow translated with its conntrack entry (same backend). */
	SY_REASON_PKT_CT_HIT = 34,
	/* Reply translated back (backend -> frontend source, node:port -> client destination). */
	SY_REASON_PKT_REVNAT = 35,
	/* ICMP error about a translated flow rewritten (outer and inner headers). */
	SY_REASON_PKT_ICMP_REVNAT = 36,
	/* No backends, SY_FE_REJECT_EMPTY: answered with a TCP RST. */
	SY_REASON_PKT_REJECT_RST = 37,
	/* No backends, SY_FE_REJECT_EMPTY: answered with ICMP(v6) port unreachable. */
	SY_REASON_PKT_REJECT_ICMP = 38,
	/* SY_FE_LOCAL_ONLY (externalTrafficPolicy Local) and no local backend: dropped. */
	SY_REASON_PKT_DROP_NO_LOCAL_BACKEND = 39,
	/* SY_FE_SOURCE_RANGES and the client is outside loadBalancerSourceRanges: dropped. */
	SY_REASON_PKT_DROP_SOURCE_RANGE = 40,
	/* Every probed SNAT source port was taken: dropped. */
	SY_REASON_PKT_DROP_SNAT_EXHAUSTED = 41,
	/* No SNAT address configured for the family (sy_pkt_config): dropped. */
	SY_REASON_PKT_DROP_SNAT_NO_ADDR = 42,
	/* An IP packet whose transport header is truncated, or an ICMP error whose quoted packet
	 * is: passed to the stack untouched (which drops it). */
	SY_REASON_PKT_PASS_MALFORMED = 43,
	/* A later IP fragment whose first fragment was not translated here (or not seen yet):
	 * passed to the stack untouched. */
	SY_REASON_PKT_PASS_FRAGMENT = 44,
	/* sy_ct or sy_nat could not be written: dropped. */
	SY_REASON_PKT_DROP_CT_UPDATE = 45,
	/* A packet rewrite helper failed (store/checksum/resize): dropped. */
	SY_REASON_PKT_DROP_REWRITE = 46,
	/* Translated packet larger than the route's MTU with DF (or IPv6): ICMP frag-needed /
	 * packet-too-big sent back to the client instead (path-MTU discovery keeps working). */
	SY_REASON_PKT_FRAG_NEEDED = 47,
	/* A reject or frag-needed answer could not be built (IPv4 options): dropped. */
	SY_REASON_PKT_DROP_NO_ANSWER = 48,
	/* Translated to the backend remembered for this client (sessionAffinity ClientIP). */
	SY_REASON_PKT_AFFINITY = 49,
	/* Decapsulated from a director but for no frontend or flow of this node (an ICMP error
	 * about an unknown flow, a VIP the node does not serve): dropped, since the stack would
	 * route it back towards the directors (a loop until the TTL runs out). */
	SY_REASON_PKT_DROP_DECAP_UNHANDLED = 50,
	/* A TCP flow that starts without a SYN and would need a SNAT port: dropped. A fresh SNAT
	 * port gives the backend a tuple it never saw (it could only answer RST), and a flood of
	 * such packets with random source ports would otherwise take every SNAT port. */
	SY_REASON_PKT_DROP_NOT_SYN = 51,
	/* A later IP fragment (IPv4, or IPv6 fragment header) translated like its first fragment,
	 * whose ports were remembered (c/lib/frag.h). */
	SY_REASON_PKT_FRAG_XLAT = 52,
	/* An 802.1Q / 802.1ad tagged frame: passed untouched. It belongs to the VLAN's device,
	 * which is the one to list in --devices (TC there sees it untagged). */
	SY_REASON_PKT_PASS_VLAN = 53,
	/* IPv6 with a routing header not yet at its final destination (the transport checksum
	 * names the final one), or more than 8 extension headers: passed untouched. */
	SY_REASON_PKT_PASS_IPV6_EXT = 54,
	/* A frame the device received for another host's MAC address (PACKET_OTHERHOST: a switch
	 * or bridge flooding a unicast frame it has no port for, a promiscuous device): passed
	 * untouched — the host it was meant for translates it; translating it here too would
	 * answer one SYN from two nodes (seen in L2 failover, when the old owner's MAC floods). */
	SY_REASON_PKT_PASS_OTHERHOST = 55,
	/* New flow DNATed to a backend on another node and encapsulated to that node (DSR:
	 * the client's address kept, the reply leaves that node straight to the client). */
	SY_REASON_PKT_DNAT_DSR = 56,
	/* DSR flow whose backend's node is no longer known (sy_dsr_nodes): dropped. */
	SY_REASON_PKT_DROP_DSR_NO_NODE = 57,
	/* DSR: making room for or writing the outer headers failed: dropped. */
	SY_REASON_PKT_DROP_DSR_ENCAP = 58,
	/* DSR: an IPv4 packet without DF that the outer headers make larger than the route's MTU
	 * (with DF, or IPv6, the client gets frag-needed / packet-too-big instead): dropped. */
	SY_REASON_PKT_DROP_DSR_TOO_BIG = 59,
	/* XDP (--xdp): a packet of a tracked or newly decided flow handed to TC untranslated,
	 * which then translates it from the same conntrack entry: its route needs the stack
	 * (neighbour unknown, larger than the route's MTU, no route), it leaves by a device
	 * without the XDP program, or its transport checksum is a pseudo-header sum only (a
	 * frame a local socket sent through a veth; XDP cannot see the skb's checksum state). */
	SY_REASON_PKT_XDP_TO_TC = 61,
	/* XDP (--xdp): translated and sent at XDP (XDP_TX or redirect), never seen by TC; counted
	 * besides its translation reason (PKT_DNAT, PKT_CT_HIT, PKT_REVNAT...). */
	SY_REASON_PKT_XDP_FORWARDED = 62,
	/* A flow got a new sy_ct entry (its tuple had none, not even an expired one). The
	 * programs never delete sy_ct entries, so this count minus the entries present is what
	 * the LRU evicted (switchyard_conntrack_evictions_total). Kept far from the drop reasons
	 * above so new reasons can be added before it. */
	SY_REASON_PKT_CT_CREATED = 63,
};

/* sy_xdp_devs value, keyed by ifindex: a device the XDP program is attached to (--xdp). */
struct sy_xdp_dev {
	__u8 mac[6]; /* the device's address: frames for another pass to TC (PACKET_OTHERHOST) */
	__u16 flags; /* zero */
};

/* max_entries of sy_xdp_devs: devices with the XDP program, the only ones it redirects to. */
#define SY_XDP_DEVS_MAX 64

/* How long the per-packet XDP program reuses a next hop on a CPU (lib/route_cache.h): a
 * route, neighbour or MTU change, and a device leaving sy_xdp_devs, take effect within this
 * time (so a detach waits this long between removing the device and removing its program). */
#define SY_NP_ROUTE_TTL_MS 100

/* Conntrack states (struct sy_ct_entry.state). */
#define SY_CT_SYN_SENT 1    /* TCP: client SYN seen, no reply yet */
#define SY_CT_ESTABLISHED 2 /* TCP: the backend answered; UDP/other: any packet */
#define SY_CT_CLOSING 3     /* TCP: FIN or RST seen in either direction */

/* Conntrack flags (struct sy_ct_entry.flags). */
#define SY_CT_F_SNAT (1u << 0)       /* source rewritten to this node's address */
#define SY_CT_F_REPLY_SEEN (1u << 1) /* a reply passed through sy_nat */
#define SY_CT_F_HAIRPIN (1u << 2)    /* client is the backend: SNAT forced */
/* DSR (sy_pkt_config.flags SY_PKT_F_DSR): on the node the client reached, a flow to a backend
 * on another node, encapsulated to that node with the client's address kept (replies never
 * come back here); on the backend's node, the entry the decapsulation wrote from the packet's
 * DSR option (its sy_nat entry turns the backend's replies into frontend -> client). */
#define SY_CT_F_DSR (1u << 3)
/* TCP: the last packet seen was an RST. Neither end then keeps the connection (no TIME_WAIT on
 * the backend), so the flow's SNAT port is held, not live, for the rest of its closing timeout
 * (snat.h). Cleared by any later packet that is not an RST: the reset did not end the flow. */
#define SY_CT_F_RESET (1u << 4)

/* How long a flow an RST ended must stay quiet before its SNAT port is held rather than live:
 * an RST of an earlier connection on the same client tuple, delayed behind the new one's SYN
 * (another CPU's backlog), marks the new flow; its own next packet, milliseconds later, clears
 * the mark long before this, so its port is never given away. */
#define SY_SNAT_RESET_QUIET_MS 1000

/* Number of SNAT ports tried for one new flow before SY_REASON_PKT_DROP_SNAT_EXHAUSTED. */
#define SY_SNAT_PROBES 32

/* max_entries of sy_snat_claims (snat.h): one claim word per reply tuple whose SNAT port was
 * claimed lately. A word only has to outlive one claim (microseconds), so 16,384 entries are
 * plenty at any rate of new flows (an LRU evicts the ones not used longest). */
#define SY_SNAT_CLAIMS 16384

/* A closed TCP flow's SNAT port is not given to a new flow for this long after the flow's last
 * packet (at least the closing timeout; from the reset itself for a flow an RST ended, whose
 * port is otherwise live until the closing timeout), while a free port is found: the backend keeps the
 * closed connection in TIME_WAIT (Linux 60 s; nf_conntrack holds TIME_WAIT 120 s) and answers
 * a SYN from another client's connection on that tuple with an ACK of the old one, unless the
 * SYN's sequence number or timestamp happen to be newer (the client's are random per
 * connection); the client then resets and retransmits the SYN a second later. When every
 * probed port is taken, the one closed longest ago is reused (the closing timeout is the
 * hard limit, as before). */
#define SY_SNAT_TCP_HOLD_S 120

/* A flow as seen on the wire (5-tuple). */
struct sy_ct_key {
	struct sy_addr saddr;
	struct sy_addr daddr;
	__be16 sport; /* network byte order; ICMP echo: identifier, else 0 */
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2]; /* zero */
};

/* sy_ct value, keyed by the client's original tuple (client -> frontend). */
struct sy_ct_entry {
	struct sy_addr nat_saddr; /* source after translation: client, or node SNAT address */
	struct sy_addr nat_daddr; /* backend address */
	__be16 nat_sport;         /* client port, or the allocated SNAT port */
	__be16 nat_dport;         /* backend port */
	__u32 backend_id;
	__u32 frontend_id;
	__u8 state; /* SY_CT_* */
	__u8 flags; /* SY_CT_F_* */
	__u8 pad[2];
	__u64 last_seen_ns; /* bpf_ktime_get_ns() of the last packet in either direction */
};

/* sy_nat value, keyed by the reply tuple the backend sends (backend -> client or node:port):
 * the original tuple, whose sy_ct entry holds the state. */
struct sy_nat_entry {
	struct sy_ct_key orig;
};

/* sy_src_ranges key (LPM trie): loadBalancerSourceRanges of one frontend.
 * prefixlen counts frontend_id's 32 bits plus the address prefix, with IPv4 prefixes as
 * IPv4-mapped (a /24 is 32 + 96 + 24). Value: __u32 (zero). */
struct sy_src_range_key {
	__u32 prefixlen;
	__u32 frontend_id; /* always fully matched (part of every prefix) */
	struct sy_addr addr;
};

/* sy_pkt_config value, key 0: per-packet settings written by the agent. */
struct sy_pkt_config {
	struct sy_addr snat_addr4;  /* IPv4-mapped source for SNAT, all-zero = none */
	struct sy_addr snat_addr6;  /* IPv6 source for SNAT, all-zero = none */
	__u16 snat_port_min;        /* host order, inclusive; disjoint from the NodePort range */
	__u16 snat_port_max;        /* host order, inclusive */
	__u32 flags;                /* SY_PKT_F_* */
	__u32 timeout_tcp_syn_s;    /* SY_CT_SYN_SENT */
	__u32 timeout_tcp_established_s;
	__u32 timeout_tcp_closing_s;
	__u32 timeout_udp_s;
	__u32 timeout_other_s;      /* ICMP echo */
	__u32 timeout_unreplied_s; /* any flow until its first reply (caps the others) */
	__be16 dsr_port;            /* SY_PKT_F_DSR: GUE destination port, network order */
	__u16 pad;                  /* zero */
};

/* sy_pkt_config.flags */
/* NodePort / LoadBalancer / ExternalIP traffic to a backend on another node is DNATed and
 * encapsulated (GUE with a struct sy_gue_dsr option) to the backend's node instead of SNATed;
 * that node's decapsulation writes the conntrack that turns the replies into frontend ->
 * client, sent straight to the client (docs/datapath.md "DSR"). */
#define SY_PKT_F_DSR (1u << 0)

/* sy_dsr_nodes: backend address (struct sy_node_addr_key) -> the address of the node the
 * backend runs on (struct sy_addr, same family), for the backends on other nodes. The loader
 * sizes it like sy_backends (--max-backends). */
#define SY_DEFAULT_DSR_NODES SY_DEFAULT_BACKENDS

/* Default per-packet map sizes (c/lib/nodeport_maps.h; PacketMapSizes::default in Rust). */
#define SY_DEFAULT_CT 262144
#define SY_DEFAULT_NAT 262144
#define SY_DEFAULT_SRC_RANGES 16384

/* Conntrack timeouts in seconds when sy_pkt_config leaves one at zero (Timeouts::default in
 * Rust): close to the kernel's nf_conntrack defaults, established 6 h instead of 5 days. */
#define SY_CT_TIMEOUT_TCP_SYN_S 60
#define SY_CT_TIMEOUT_TCP_ESTABLISHED_S 21600
#define SY_CT_TIMEOUT_TCP_CLOSING_S 10
#define SY_CT_TIMEOUT_UDP_S 60
#define SY_CT_TIMEOUT_OTHER_S 30
#define SY_CT_TIMEOUT_UNREPLIED_S 30


/* ======================================================================================
 * Director (issue 16): the XDP program c/director.bpf.c on a director's uplink, and the
 * decapsulation program c/decap.bpf.c at TC ingress of a node's devices. docs/director.md
 * has the wire format. The director's maps live in its own bpffs directory (no node map is
 * shared); the decapsulation maps sit beside the node's.
 * ====================================================================================== */

/* Default destination UDP port of GUE / FOU (Katran's). */
#define SY_GUE_PORT_DEFAULT 6080

/* sy_dir_config.encap */
#define SY_ENCAP_GUE 0  /* GUE variant 0: outer IP, UDP, 4-byte GUE header, inner IP */
#define SY_ENCAP_FOU 1  /* FOU = GUE variant 1: outer IP, UDP, inner IP */
#define SY_ENCAP_IPIP 2 /* outer IP (protocol 4 or 41), inner IP */

/* GUE variant 0 header (draft-ietf-intarea-gue section 3.1): byte 0 = version (2 bits, 0),
 * C (1 bit, 0: data), hlen (5 bits: 32-bit words of optional fields after the header);
 * byte 1 = the inner IP protocol (4 IPv4, 41 IPv6); bytes 2-3 = flags. The director sends
 * hlen 0 and flags 0; decapsulation skips hlen words, so a later header with optional fields
 * (issue 17's previous node) stays readable by older nodes. */
struct sy_gue_hdr {
	__u8 vc_hlen;  /* version << 6 | C << 5 | hlen */
	__u8 proto;    /* IPPROTO_IPIP (4) or IPPROTO_IPV6 (41) */
	__be16 flags;  /* zero */
};
#define SY_GUE_HLEN_MASK 0x1f
#define SY_GUE_VERSION_SHIFT 6

/* The second chance (issue 17): GUE private data (flags 0, so all hlen words are private data,
 * draft-ietf-intarea-gue section 3.3) naming the node that held the flow's Maglev slot before
 * the latest table change. Sent only with TCP and UDP packets whose slot changed. A node that
 * re-sends a packet swaps addresses: the outer destination becomes `addr`, and `addr` its own
 * address (the old outer destination), so the receiver can send it back.
 *   hops 0 (from a director): kept if the node owns the flow (conntrack entry, local socket)
 *     or it is a TCP SYN; else re-sent to `addr` (the previous node) with hops 1.
 *   hops 1: TCP is kept. UDP is kept if this (previous) node owns the flow; else returned to
 *     `addr` (the director's choice) with hops 2: a UDP flow nobody owns is a new flow there.
 *   hops 2: kept (a packet is re-sent at most twice).
 * 4 bytes, then the address: 4 bytes for SY_AF_INET (hlen 2), 16 for SY_AF_INET6 (hlen 5);
 * the family is the outer header's. docs/director.md. */
struct sy_gue_prev {
	__u8 kind;     /* SY_GUE_PREV_KIND: anything else is someone else's private data */
	__u8 hops;     /* 0 from a director; 1 re-sent by the chosen node; 2 returned (UDP) */
	__u8 family;   /* SY_AF_INET or SY_AF_INET6 */
	__u8 reserved; /* zero */
};
#define SY_GUE_PREV_KIND 0x53 /* 'S' */
#define SY_GUE_PREV_HLEN4 2
#define SY_GUE_PREV_HLEN6 5

/* DSR for NodePort (issue 20): GUE private data a node puts in front of a client's packet it
 * DNATed to a backend on another node: the frontend the client addressed (the inner family's
 * address follows: 4 bytes, hlen 2, or 16 bytes, hlen 5). The backend's node writes its
 * conntrack from it (replies leave as frontend -> client) and delivers the inner packet.
 * Accepted only from the cluster's nodes (sy_decap_directors value SY_DECAP_SRC_NODE). */
struct sy_gue_dsr {
	__u8 kind;    /* SY_GUE_DSR_KIND */
	__u8 family;  /* the inner packet's: SY_AF_INET or SY_AF_INET6 */
	__be16 port;  /* the frontend's port */
};
#define SY_GUE_DSR_KIND 0x44 /* 'D' */
#define SY_GUE_DSR_HLEN4 2
#define SY_GUE_DSR_HLEN6 5

/* Outer UDP source port of GUE/FOU: SY_ENCAP_SPORT_BASE | (flow hash bits), so receivers can
 * spread flows over queues by RSS while one flow keeps one port. */
#define SY_ENCAP_SPORT_BASE 0xc000
#define SY_ENCAP_SPORT_MASK 0x3fff

/* The flow hash's SipHash state v0..v3 after a VIP's words (destination address, port,
 * protocol, padding: c/lib/siphash.h, docs/maglev.md) under the key (k0, k1): per packet the
 * director hashes only the source's words from it. Used only while (k0, k1) equals
 * sy_dir_config's key; otherwise the program hashes from scratch, so a prefix left from
 * another seed costs time, never a wrong node. Written by user space (crates/maglev
 * FlowPrefix) with every VIP entry, and again for every VIP when the seed changes. */
struct sy_flow_prefix {
	__u64 k0;
	__u64 k1;
	__u64 v[4];
};

/* sy_dir_vip_slots value and sy_dir_vips (the overflow hash) value; keys are struct
 * sy_frontend_key (scope SY_SCOPE_DEFAULT). */
struct sy_dir_vip {
	__u32 id;       /* nonzero; key of the per-VIP counters */
	__u32 table_id; /* sy_dir_tables key; 0: no node serves this VIP (dropped, counted) */
	struct sy_flow_prefix hash; /* the flow hash's state after this VIP's words */
};

/* sy_dir_vip_slots value (issue 16: a VIP found by an inlined array lookup, not a hash map's
 * call): an array of 2^k slots, a VIP's home slot is sy_dir_vip_slot_of(key, 32 - k). A slot
 * holds the VIP whose home it is, or none (key.family 0); a VIP whose home slot holds another
 * lives in sy_dir_vips, and its home slot then has SY_DIR_SLOT_OVERFLOW. User space writes a
 * slot so that a reader never matches a half-written key: family 0 first, then the family. */
struct sy_dir_vip_slot {
	struct sy_frontend_key key;
	struct sy_dir_vip vip;
	__u32 flags; /* SY_DIR_SLOT_OVERFLOW */
	__u32 pad;   /* zero */
};
#define SY_DIR_SLOT_OVERFLOW 1u

/* The home slot of a VIP key among 2^(32 - shift) slots (shift 1..31): the address words,
 * the port/protocol/family word, two multiplications by the golden ratio, the top bits. Not
 * keyed: user space places every VIP, a collision costs one hash lookup. */
static inline __u32 sy_dir_vip_slot_of(const struct sy_frontend_key *k, __u32 shift)
{
	const __u32 *w = (const __u32 *)k;
	__u32 x = (w[0] ^ w[1] ^ w[2] ^ w[3]) * 0x9e3779b1u;

	x = (x ^ w[4]) * 0x9e3779b1u;
	return x >> (shift & 31);
}

/* sy_dir_nodes value (an array indexed by the __u32 node id, nonzero): where encapsulated
 * packets go. An unused id is all zero: family 0. */
struct sy_dir_node {
	struct sy_addr addr; /* IPv4 mapped, or IPv6 */
	__u8 family;         /* SY_AF_INET or SY_AF_INET6: the outer header's family; 0: no node */
	__u8 pad[3];
	__u32 flags; /* zero (reserved for node health, issue 17) */
};

/* sy_dir_config value, key 0: written by the director at start. */
struct sy_dir_config {
	struct sy_addr source4; /* outer source towards IPv4 nodes (mapped); zero: none */
	struct sy_addr source6; /* outer source towards IPv6 nodes; zero: none */
	__u64 hash_k0;          /* SipHash key, seed bytes 0..8 little-endian (as sy_config) */
	__u64 hash_k1;
	__u32 table_size;       /* M of every sy_dir_tables inner array */
	__be16 gue_port;        /* destination UDP port of GUE / FOU, network order */
	__u8 encap;             /* SY_ENCAP_* */
	__u8 pad;
	__u32 vip_slot_shift;   /* sy_dir_vip_slots has 2^(32 - shift) entries */
	__u32 reserved;         /* zero */
};

/* Counter indexes of sy_dir_counters (director) and what happened to the packet. */
enum sy_dir_reason {
	/* Encapsulated to the flow's node with GUE / FOU / IPIP and sent. */
	SY_DIR_ENCAP_GUE = 0,
	SY_DIR_ENCAP_FOU = 1,
	SY_DIR_ENCAP_IPIP = 2,
	/* An ICMP error about a VIP flow: encapsulated to the node of the quoted flow. */
	SY_DIR_ICMP_TO_NODE = 3,
	/* Too big after encapsulation: ICMP frag-needed / packet-too-big with the inner MTU sent
	 * back to the client instead. */
	SY_DIR_FRAG_NEEDED = 4,
	/* A VIP no node serves (table 0): dropped. */
	SY_DIR_DROP_NO_NODE = 5,
	/* The VIP's table or the slot's node is missing (update invariant broken): dropped. */
	SY_DIR_DROP_TABLE_MISSING = 6,
	SY_DIR_DROP_NODE_MISSING = 7,
	/* An IP packet whose transport header (or ICMP quote) is truncated: no ports to tell a
	 * VIP flow by, passed to the stack (which drops it: it does not own VIPs). */
	SY_DIR_PASS_MALFORMED = 8,
	/* An IP fragment (no ports to hash): passed to the stack, which does not forward it. */
	SY_DIR_PASS_FRAGMENT = 9,
	/* No director address of the node's family configured: dropped. */
	SY_DIR_DROP_NO_SOURCE = 10,
	/* No route to the node, or its next hop's MAC is not known yet: dropped. */
	SY_DIR_DROP_NO_ROUTE = 11,
	/* Growing or shrinking the frame failed: dropped. */
	SY_DIR_DROP_RESIZE = 12,
	/* A too-big packet whose answer could not be built (IPv4 options): dropped. */
	SY_DIR_DROP_NO_ANSWER = 13,
	/* The director's config or a VIP's table size is missing: dropped. */
	SY_DIR_DROP_NO_CONFIG = 14,
	/* Of the encapsulated TCP packets: carried the slot's previous node (GUE only). */
	SY_DIR_SECOND_CHANCE = 15,
	/* A health probe of the director's own (skb mark SY_DIR_PROBE_MARK, TC egress)
	 * encapsulated to the node it is addressed to, as VIP traffic would be. */
	SY_DIR_PROBE_ENCAP = 16,
	/* A health probe that could not be encapsulated (no source of its family, no config,
	 * resize failed): dropped, so the probe fails rather than going out bare. */
	SY_DIR_DROP_PROBE = 17,
	SY_DIR_REASON_MAX = 32,
};

/* sy_dir_vip_counters (per-CPU array indexed by VIP id) and sy_dir_node_counters (per-CPU
 * array indexed by node id) value: what went out encapsulated. */
struct sy_dir_counter {
	__u64 packets;
	__u64 bytes; /* inner IP packet bytes */
};

/* sy_dir_table_nodes (user space only: the program never reads it): the Node name and Maglev
 * weight of every node of every table, written with the table, so explain, status and the
 * metrics can name nodes (the program's maps know only addresses). */
struct sy_dir_table_node_key {
	__u32 table_id;
	__u32 node_id;
};
#define SY_DIR_NODE_NAME_LEN 60

/* sy_dir_health (user space only: written by the director's health checker, read by
 * `switchyard status`): one probed target, a node's address and a port on it. */
struct sy_dir_health_key {
	struct sy_addr addr;
	__u16 port; /* host order */
	__u8 family;
	__u8 pad;
};
#define SY_DIR_HEALTH_UP 0
#define SY_DIR_HEALTH_DOWN 1
#define SY_DIR_HEALTH_DRAINING 2
struct sy_dir_health {
	__u32 state;     /* SY_DIR_HEALTH_* */
	__u32 failures;  /* probes failed in a row */
	__u32 successes; /* probes answered 200 in a row */
	__u32 last;      /* the last outcome: 0 none yet, 1 200, 2 503, 3 failed */
	__u64 since_ms;  /* unix time (ms) the state began; 0: up since first probed */
	__u8 name[SY_DIR_NODE_NAME_LEN]; /* Node name, NUL-padded; longer names are cut */
	__u32 pad;
};

/* The skb mark (SO_MARK) of the director's health probes: its TC egress program
 * (sy_dir_probe) encapsulates such a packet to the node it is addressed to. "SYHP". */
#define SY_DIR_PROBE_MARK 0x53594850
struct sy_dir_table_node {
	__u32 weight;                    /* the node's Maglev weight in this table */
	__u8 name[SY_DIR_NODE_NAME_LEN]; /* Node name, NUL-padded; longer names are cut */
};

/* sy_decap_config value, key 0: written by the node agent. */
struct sy_decap_config {
	__be16 gue_port; /* GUE / FOU destination port, network order; 0: UDP not decapsulated */
	__u16 pad;
	__u32 flags;     /* zero */
};

/* sy_decap_directors key: struct sy_node_addr_key (an address encapsulated packets may come
 * from). Value: __u32, SY_DECAP_SRC_* bits (0 counts as a director: older agents wrote 0).
 * Encapsulated packets from any other source are dropped; a node's address (DSR) may send
 * only packets with the DSR option, a director's only packets without it. */
#define SY_DECAP_SRC_DIRECTOR (1u << 0)
#define SY_DECAP_SRC_NODE (1u << 1)

/* Counter indexes of sy_decap_counters (node). */
enum sy_decap_reason {
	/* Outer headers removed; the inner packet goes on to the per-packet path. */
	SY_DECAP_GUE = 0,
	SY_DECAP_FOU = 1,
	SY_DECAP_IPIP = 2,
	/* Encapsulated (GUE port, or IP protocol 4/41) from an address that is not a director:
	 * dropped (a decapsulator that accepts anyone is an open relay). */
	SY_DECAP_DROP_NOT_DIRECTOR = 3,
	/* From a director but unreadable: truncated, GUE version/C bit not 0, inner not IP. */
	SY_DECAP_DROP_MALFORMED = 4,
	/* bpf_skb_adjust_room or the Ethernet type rewrite failed: dropped. */
	SY_DECAP_DROP_ADJUST = 5,
	/* Second chance (a packet naming the slot's previous node): kept here (a TCP SYN, a flow
	 * this node holds in conntrack or a local socket, or a TCP packet re-sent once already),
	 * re-sent to the previous node (not held here), or kept because it could not be re-sent
	 * or returned (no route). */
	SY_DECAP_SC_KEPT = 6,
	SY_DECAP_SC_FORWARDED = 7,
	SY_DECAP_SC_NO_ROUTE = 8,
	/* Of the decapsulated: a GRO-merged packet (gso_segs > 1), its segments' outer headers
	 * stripped at once (BPF_F_ADJ_ROOM_FIXED_GSO keeps the inner segment size). */
	SY_DECAP_GRO_MERGED = 9,
	/* Second chance, UDP: the previous node does not own the flow either: returned to the
	 * node the director chose (hops 2), which accepts it as a new flow (counted there). */
	SY_DECAP_SC_RETURNED = 10,
	SY_DECAP_SC_NEW_FLOW = 11,
	/* DSR (a node's GUE packet with the DSR option): conntrack written, decapsulated. */
	SY_DECAP_DSR = 12,
	/* DSR option from a source that is no node, or a packet without it from a node that is
	 * no director: dropped. */
	SY_DECAP_DROP_NOT_NODE = 13,
	/* DSR option unreadable (length, family), or the inner packet not TCP/UDP with ports: dropped. */
	SY_DECAP_DROP_DSR_MALFORMED = 14,
	/* DSR: the conntrack or reverse-NAT entry could not be written: dropped. */
	SY_DECAP_DROP_DSR_CT = 15,
	SY_DECAP_REASON_MAX = 16,
};

/* The decapsulation leaves this in __sk_buff cb[SY_DECAP_CB] of every packet it decapsulated
 * (and 0 in every other packet it sees), so the per-packet program that runs next in the TCX
 * chain knows the packet came from a director (SY_REASON_PKT_DROP_DECAP_UNHANDLED). */
#define SY_DECAP_CB 0
#define SY_DECAP_CB_MARK 0x53594443u /* "SYDC" */

#endif /* SWITCHYARD_H */
