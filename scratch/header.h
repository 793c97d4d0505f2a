
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

/* Outer UDP source port of GUE/FOU: SY_ENCAP_SPORT_BASE | (flow hash bits), so receivers can
 * spread flows over queues by RSS while one flow keeps one port. */
#define SY_ENCAP_SPORT_BASE 0xc000
#define SY_ENCAP_SPORT_MASK 0x3fff

/* sy_dir_vips key: struct sy_frontend_key (scope SY_SCOPE_DEFAULT). Value: */
struct sy_dir_vip {
	__u32 id;       /* nonzero; key of the per-VIP counters */
	__u32 table_id; /* sy_dir_tables key; 0: no node serves this VIP (dropped, counted) */
};

/* sy_dir_nodes value, keyed by __u32 node id (nonzero): where encapsulated packets go. */
struct sy_dir_node {
	struct sy_addr addr; /* IPv4 mapped, or IPv6 */
	__u8 family;         /* SY_AF_INET or SY_AF_INET6: the outer header's family */
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
	SY_DIR_REASON_MAX = 32,
};

/* sy_dir_vip_counters (per CPU, keyed by VIP id) and sy_dir_node_counters (per CPU, keyed by
 * node id) value: what went out encapsulated. */
struct sy_dir_counter {
	__u64 packets;
	__u64 bytes; /* inner IP packet bytes */
};

/* sy_decap_config value, key 0: written by the node agent. */
struct sy_decap_config {
	__be16 gue_port; /* GUE / FOU destination port, network order; 0: UDP not decapsulated */
	__u16 pad;
	__u32 flags;     /* zero */
};

/* sy_decap_directors key: struct sy_node_addr_key (an address directors send from).
 * Value: __u32 (zero). Encapsulated packets from any other source are dropped. */

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
	SY_DECAP_REASON_MAX = 16,
};
