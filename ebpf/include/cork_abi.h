/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cork_abi.h — the one definition of everything the kernel programs and the Rust agent
 * exchange: map keys and values, the audit event record, and the enums that give their
 * fields meaning. Rust gets these through bindgen (userspace/build.rs); nothing here is
 * copied by hand. Rules: fixed-width types only, explicit padding, no bool, every struct a
 * multiple of 8 bytes (struct cork_port_rule, only ever an array element of
 * struct cork_prefix_value, is 12). Sizes are asserted here and again on the Rust side.
 */
#ifndef CORK_ABI_H
#define CORK_ABI_H

#include <linux/types.h>

/* How many (port range, proto, action) slots one prefix entry holds. A prefix carries its
 * own rules plus those of every shorter prefix that contains it (the LPM trie returns only
 * the longest match), so the policy compiler refuses manifests that need more. */
#define CORK_PREFIX_SLOTS 16
/* Capacity of each per-family prefix trie. The tries allocate per entry (no preallocation,
 * ~256 bytes each), so a high cap costs nothing until a policy uses it. */
#define CORK_MAX_PREFIXES 131072
/* Capacity of the host loopback port allowlist. */
#define CORK_MAX_HOST_PORTS 256
/* Ring buffer size for audit events (bytes, power of two, multiple of the page size). */
#define CORK_EVENTS_BYTES (1 << 20)
/* Allow events for unconnected UDP are logged once per (socket, destination); this bounds
 * how many such flows are remembered. */
#define CORK_MAX_FLOWS 16384
/* Repeated allowed connects of one flow are counted in the kernel instead of each
 * becoming a record (cork_allows, see cork_events.h): its slots (a power of two: a hash
 * masked to it picks a flow's two slots; a flow finding both taken by others is recorded
 * on every connect, as before), and for how long one record stands for the connects that
 * follow it. */
#define CORK_MAX_ALLOW_FLOWS 4096
#define CORK_ALLOW_WINDOW_NS 1000000000ull
/* How long after its window ended the agent frees a flow's slot that has nothing left
 * to report (userspace/bpf/src/counted.rs): a program counts in a slot only while its
 * clock is inside the window it read there, and runs for microseconds. */
#define CORK_ALLOW_IDLE_NS 10000000000ull
/* Kernel functions (kfuncs) the programs call. aya 0.14 relocates no kfunc call, so a
 * program emits the call instruction itself (cork_kern.h): BPF_CALL with src_reg
 * BPF_PSEUDO_KFUNC_CALL and one of these indexes as its imm, which the loader replaces
 * with the running kernel's BTF id of that function (userspace/bpf/src/kfunc.rs). Left
 * unreplaced, an index is no function's id and the verifier refuses the program. */
#define CORK_KFUNC_CAST_TO_KERN_CTX 0
/* rule_id value meaning "no manifest rule decided this" (default deny, loopback...). */
#define CORK_RULE_NONE 0xffffffffu
/* Set in every rule id written to the slot-1 policy maps (see cork_policy_slot in
 * cork_maps.h): an audit record names the generation whose rule decided, however late it
 * is read. Rule ids stay below 1 << 20. */
#define CORK_RULE_SLOT_BIT 0x40000000u

/* Capacity of the unix name map: the manifest's `[unix] allow` plus cork's own deny entries
 * for its control socket (the policy compiler refuses more). */
#define CORK_MAX_UNIX_NAMES 256
/* Bytes of sun_path in struct sockaddr_un: the longest unix socket name. */
#define CORK_UNIX_NAME_MAX 108

/* Capacity of cork_cfg, the bottles the programs can tell apart by their cgroup. */
#define CORK_MAX_BOTTLES 4096

/* Capacity of the map from a redirected connection's client address to its original
 * destination (LRU: an entry lives from the bottle's connect() until the proxy accepts). */
#define CORK_MAX_REDIRECTS 16384

/* What a matching slot does. The REDIRECT actions allow TCP through the bottle's
 * inspecting proxy (connect() is rewritten to it) and refuse UDP to the same ports, so
 * HTTP/3 falls back to TCP where it can be inspected. REDIRECT covers every port of the
 * slot; REDIRECT_WEB only ports 80 and 443 and plainly allows the slot's other ports. */
enum cork_action {
	CORK_ACTION_NONE = 0,
	CORK_ACTION_ALLOW = 1,
	CORK_ACTION_DENY = 2,
	CORK_ACTION_REDIRECT = 3,
	CORK_ACTION_REDIRECT_WEB = 4,
};

/* Protocol selector in a slot: IANA numbers, 0 matches TCP and UDP alike. */
enum cork_proto_sel {
	CORK_PROTO_ANY = 0,
	CORK_PROTO_TCP = 6,
	CORK_PROTO_UDP = 17,
};

/* Which kernel hook produced an event. */
enum cork_hook {
	CORK_HOOK_CONNECT4 = 1,
	CORK_HOOK_CONNECT6 = 2,
	CORK_HOOK_SENDMSG4 = 3,
	CORK_HOOK_SENDMSG6 = 4,
	CORK_HOOK_SOCK_CREATE = 5,
	CORK_HOOK_SKB_EGRESS = 6,
	CORK_HOOK_RECVMSG4 = 7,
	CORK_HOOK_RECVMSG6 = 8,
	CORK_HOOK_TC_INGRESS = 9, /* a VM bottle's tap: packets from the guest */
	CORK_HOOK_CONNECT_UNIX = 10, /* connect() of a unix socket (Linux 6.7+) */
	CORK_HOOK_SENDMSG_UNIX = 11, /* a unix datagram sent with an address (Linux 6.7+) */
};

enum cork_verdict {
	CORK_VERDICT_ALLOW = 1,
	CORK_VERDICT_DENY = 2,
};

/* Why a verdict was reached. Stable numbers: userspace names them in audit events. */
enum cork_reason {
	CORK_REASON_ALLOW_RULE = 1,      /* an egress.allow entry matched */
	CORK_REASON_DENY_RULE = 2,       /* an egress.deny entry matched (deny beats allow) */
	CORK_REASON_DEFAULT_DENY = 3,    /* nothing allowed it */
	CORK_REASON_LOOPBACK_OWN = 4,    /* loopback listener owned by this bottle */
	CORK_REASON_LOOPBACK_HOST_PORT = 5, /* loopback port listed in loopback.host_ports */
	CORK_REASON_LOOPBACK_FOREIGN = 6,/* loopback service of the host or another bottle */
	CORK_REASON_RAW_SOCKET = 7,      /* SOCK_RAW refused at creation */
	CORK_REASON_ICMP_SOCKET = 8,     /* ICMP datagram ("ping") socket refused at creation */
	CORK_REASON_UNSUPPORTED_SOCKET = 9, /* inet socket that is neither TCP nor UDP */
	CORK_REASON_UNVETTED_PACKET = 10,/* packet outside the policy seen at cgroup_skb egress */
	CORK_REASON_PACKET_SOCKET = 11,  /* AF_PACKET socket refused (seccomp, in userspace) */
	CORK_REASON_DNS_REDIRECT = 12,   /* port 53 sent to the bottle's DNS proxy instead */
	CORK_REASON_PROXY_REDIRECT = 13, /* allowed, through the bottle's inspecting proxy */
	CORK_REASON_QUIC_REFUSED = 14,   /* UDP to a port whose TCP is inspected (HTTP/3) */
	CORK_REASON_SPOOFED_MAC = 15,    /* a guest frame whose source MAC is not its NIC's */
	CORK_REASON_SPOOFED_SOURCE = 16, /* a guest packet whose source is not its address */
	CORK_REASON_GATEWAY_PORT = 17,   /* to the gateway (the host) on a port not allowed */
	CORK_REASON_NOT_IP = 18,         /* a guest frame that is neither IP, ARP nor NDP */
	CORK_REASON_DNS_NAT = 19,        /* DNS handed to nftables for the bottle's DNS proxy */
	CORK_REASON_UNIX_ALLOW = 20,     /* a unix.allow entry names the socket */
	CORK_REASON_CONTROL_SOCKET = 21, /* cork's own control socket: never from a bottle */
};

/* How a unix socket is named: a path in the file system, or an abstract name (sun_path
 * starts with a NUL; the name is the bytes after it, NULs included). */
enum cork_unix_kind {
	CORK_UNIX_PATH = 1,
	CORK_UNIX_ABSTRACT = 2,
};

/*
 * Packet marks the tap program sets on what it lets through, for the nftables chains of
 * the bottle (which act on the mark, never judge again): the policy is decided once, in
 * eBPF. A value (not flags) in a 4-bit field clear of the marks other software commonly
 * uses; the Rust side is userspace/nft/src/marks.rs, asserted equal in cork-agent.
 */
enum cork_mark {
	CORK_MARK_MASK = 0x0f000000,
	CORK_MARK_DNS = 0x01000000,     /* DNAT to the bottle's DNS proxy */
	CORK_MARK_INSPECT = 0x02000000, /* DNAT to the bottle's inspecting proxy */
	CORK_MARK_HOST = 0x03000000,    /* to the gateway on an allowed host port */
	CORK_MARK_DIRECT = 0x04000000,  /* forwarded as is (and masqueraded) */
	CORK_MARK_LINK = 0x05000000,    /* link-local plumbing: ARP, DHCP, NDP */
};

/* Flags in struct cork_sock_state. */
enum cork_sock_flags {
	CORK_SOCK_OWNED = 1,  /* created inside this bottle after enforcement began */
	CORK_SOCK_VETTED = 2, /* connect() was allowed to conn_addr:conn_port */
};

/* One rule slot of a prefix entry. Ports in host byte order, inclusive. 12 bytes, not 16:
 * a trie node then fits the kernel's 256-byte allocation class. */
struct cork_port_rule {
	__u16 port_lo;
	__u16 port_hi;
	__u8 proto;   /* enum cork_proto_sel */
	__u8 action;  /* enum cork_action */
	__u8 _pad[2];
	__u32 rule_id;/* index into the policy's rule table, or CORK_RULE_NONE */
};

/* Value of both prefix tries. slots[0, static_count) come from the manifest's prefix
 * rules and always apply; slots[static_count, count) were learned (a DNS answer for an
 * allowed name) and apply while bpf_ktime_get_boot_ns() < learned_until_ns. */
struct cork_prefix_value {
	__u32 count;        /* used slots */
	__u32 static_count; /* how many of them are static */
	__u64 learned_until_ns;
	struct cork_port_rule slots[CORK_PREFIX_SLOTS];
};

/* LPM trie keys: prefixlen first, address in network byte order. */
struct cork_lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct cork_lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* The bottle_id of a socket state that belongs to no bottle (sock_ops.bpf.c). */
#define CORK_BOTTLE_NONE 0xffffffffu

/* Per-socket state (BPF_MAP_TYPE_SK_STORAGE, cloned to accepted children). A bottle's UDP
 * sockets have one from creation; its TCP sockets once they bind, listen, are accepted or
 * are redirected (a TCP socket that only connects has none: see skb.bpf.c). */
struct cork_sock_state {
	__u32 bottle_id;
	__u32 flags;         /* enum cork_sock_flags */
	__u8 conn_addr[16];  /* IPv4 in the first 4 bytes when conn_family is AF_INET */
	__u16 conn_port;     /* host byte order */
	__u8 conn_family;
	__u8 _pad[5];
	/* Where the bottle last sent DNS before it was redirected to the proxy, as the
	 * socket addressed it (IPv4-mapped kept for IPv6 sockets): recvmsg shows replies as
	 * coming from there. */
	__u8 dns_addr[16];
	__u16 dns_port;      /* host byte order */
	__u8 dns_family;
	__u8 _pad2[5];
	/* Where a connect() redirected to the inspecting proxy was going, and the rule that
	 * allowed it; sock_ops copies this into cork_redirects once the source port exists. */
	__u8 redir_addr[16];
	__u16 redir_port;    /* host byte order; 0 = not redirected */
	__u8 redir_family;
	__u8 _pad3;
	__u32 redir_rule;
};

/* Key of cork_redirects: the redirected socket's own address as the proxy sees the peer
 * of the connection it accepts (IPv4-mapped folded to IPv4). */
struct cork_redirect_key {
	__u8 addr[16];
	__u16 port;          /* host byte order */
	__u8 family;
	__u8 _pad[5];
};

/* Value of cork_redirects: the destination the bottle dialled. Written only by this
 * bottle's kernel programs, so the proxy never trusts anything the bottle sends for it. */
struct cork_redirect_value {
	__u8 addr[16];       /* IPv4 in the first 4 bytes when family is AF_INET */
	__u16 port;          /* host byte order */
	__u8 family;
	__u8 _pad;
	__u32 rule_id;
	__u64 sock_cookie;
	__u32 pid;           /* tgid that called connect() */
	__u32 _pad3;
};

/* Key of the "allow already logged" LRU for unconnected UDP. */
struct cork_flow_key {
	__u64 cookie;
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 proto;
	__u8 _pad[4];
};

/* Key of a cork_allows slot: one allowed connect's flow as a connect finds it before
 * the policy is asked (the rule that allowed it is in the slot's value), the fields of its
 * record that the agent summarises by (userspace/agent/src/kernel_audit/aggregate.rs):
 * everything a connect's record says but its time, thread, command, socket, rule and
 * reason (always CORK_REASON_ALLOW_RULE). */
struct cork_allow_key {
	__u32 pid;
	__u8 hook;
	__u8 family;
	__u8 proto;
	__u8 sock_type;
	__u8 dst[16];
	__u16 dport;
	__u8 _pad[6];
};

/* What a cork_allows slot counts for a flow, and the verdict it keeps for it. */
struct cork_allow_value {
	__u64 window_end_ns; /* bpf_ktime_get_boot_ns() before which connects are counted */
	__u64 counted;       /* connects counted instead of recorded since the slot was
			      * claimed (only grows) */
	__u32 rule_id;       /* the allow rule that decided (fixed while LIVE) */
	__u32 _pad;
	/* The kept verdict (see cork_allow_hit), written only by the program holding
	 * `keeper`, open_until_jiffies cleared first and set last: the policy generation it
	 * was reached under (cork_policy_gen), and a bpf_jiffies64() value that the jiffies
	 * reach no later than window_end_ns nor the expiry of any learned address the verdict
	 * read. Below it, under policy_gen, the flow is allowed by rule_id and counted without
	 * asking the policy or reading the clock. 0: none. Only the programs read them. */
	__u64 policy_gen;
	__u64 open_until_jiffies;
	__u64 keeper; /* 1 while a program rewrites the kept verdict */
};

/* A cork_allows slot's state. Only a program claims a slot (FREE -> CLAIMED -> LIVE, by
 * compare-and-swap: one claimer writes its key); only the agent frees one (LIVE -> FREE,
 * by compare-and-swap through its mapping of the array), once the flow's window ended
 * CORK_ALLOW_IDLE_NS ago with nothing left to report. A 64-bit word: the BPF target's
 * compare-and-swap is 64-bit at the default CPU version. */
#define CORK_ALLOW_FREE 0
#define CORK_ALLOW_CLAIMED 1
#define CORK_ALLOW_LIVE 2

/* One slot of cork_allows, an array the agent maps into its memory (BPF_F_MMAPABLE): a
 * flow lives in one of two slots its key hashes to (cork_allow_hash), so the lookup is an
 * array index the verifier inlines, not a hash map's call. */
struct cork_allow_slot {
	__u64 state;                 /* CORK_ALLOW_FREE / _CLAIMED / _LIVE */
	struct cork_allow_key key;   /* fixed while LIVE */
	struct cork_allow_value value;
};

/* Key of cork_unix_names: a unix socket name exactly as the kernel compares it. A path
 * ends at its first NUL; an abstract name is `len` bytes after the leading NUL. Bytes of
 * name past len are zero, so equal names are equal keys. */
struct cork_unix_key {
	__u8 kind;           /* enum cork_unix_kind */
	__u8 len;            /* bytes of name used */
	__u8 _pad[2];
	__u8 name[CORK_UNIX_NAME_MAX];
};

/* Value of cork_unix_names. */
struct cork_unix_value {
	__u32 rule_id;       /* index into unix.allow, or CORK_RULE_NONE for cork's own entries */
	__u8 action;         /* CORK_ACTION_ALLOW or CORK_ACTION_DENY */
	__u8 _pad[3];
};

/* One audit record on the ring buffer. Addresses: IPv4 in the first 4 bytes. */
struct cork_event {
	__u64 ts_boot_ns;    /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;
	__u64 sock_cookie;
	__u32 pid;           /* tgid; 0 in skb context */
	__u32 tid;
	__u32 bottle_id;
	__u32 rule_id;       /* CORK_RULE_NONE when no manifest rule decided */
	__u16 dport;         /* host byte order */
	__u16 sport;
	__u8 hook;           /* enum cork_hook */
	__u8 verdict;        /* enum cork_verdict */
	__u8 reason;         /* enum cork_reason */
	__u8 family;         /* AF_INET or AF_INET6 of the judged address */
	__u8 proto;          /* IANA protocol number */
	__u8 sock_type;      /* SOCK_STREAM, SOCK_DGRAM, SOCK_RAW... */
	__u8 comm[16];
	__u8 src[16];
	__u8 dst[16];
	__u8 _pad[6];
};

/* The record of a unix hook: the common record (family AF_UNIX, proto 0, sock_type the
 * socket's), then the name judged (kind 0 when the address could not be read). Readers
 * tell it by its hook and its length. */
struct cork_unix_event {
	struct cork_event head;
	struct cork_unix_key name;
};

/* A VM bottle's guest as cork configured it (a const volatile of the tap program, set at
 * load): the only MAC and source addresses its tap accepts, and the gateway (the guest's
 * view of the host: router, DNS server, host ports). Addresses in network byte order. */
struct cork_guest {
	__u8 mac[6];
	__u8 v6_prefix_len;  /* of v6_prefix: the guest's own /64 (SLAAC) */
	__u8 _pad;
	__u8 v4[4];          /* the guest's address (DHCP) */
	__u8 gw4[4];         /* the gateway's IPv4 address */
	__u8 v6_prefix[16];
	__u8 gw6[16];        /* the gateway's global IPv6 address (RDNSS) */
	__u8 gw6_ll[16];     /* the gateway's link-local address (the router in RAs) */
};

/* A cgroup bottle's settings, found by its programs at run time in cork_cfg (keyed by the
 * id of the bottle's cgroup) rather than fixed when they are loaded: so the programs do
 * not differ from bottle to bottle. Written once by the loader before anything is
 * attached; never changed while the bottle lives. */
struct cork_bottle_cfg {
	__u32 bottle_id;     /* the bottle these hooks judge for; never 0 (0 = no bottle) */
	__u16 dns_port;      /* its DNS proxy on 127.0.0.1 and ::1; 0 = no DNS redirect */
	__u16 proxy_port;    /* its inspecting proxy on 127.0.0.1/::1; 0 = none (redirected
			      * flows are refused) */
};

#define CORK_ABI_ASSERT(cond) _Static_assert(cond, #cond)
CORK_ABI_ASSERT(sizeof(struct cork_bottle_cfg) == 8);
CORK_ABI_ASSERT(sizeof(struct cork_guest) == 64);
CORK_ABI_ASSERT(sizeof(struct cork_port_rule) == 12);
CORK_ABI_ASSERT(sizeof(struct cork_prefix_value) == 16 + 12 * CORK_PREFIX_SLOTS);
CORK_ABI_ASSERT(sizeof(struct cork_lpm_v4_key) == 8);
CORK_ABI_ASSERT(sizeof(struct cork_lpm_v6_key) == 20);
CORK_ABI_ASSERT(sizeof(struct cork_sock_state) == 80);
CORK_ABI_ASSERT(sizeof(struct cork_redirect_key) == 24);
CORK_ABI_ASSERT(sizeof(struct cork_redirect_value) == 40);
CORK_ABI_ASSERT(sizeof(struct cork_flow_key) == 32);
CORK_ABI_ASSERT(sizeof(struct cork_allow_key) == 32);
CORK_ABI_ASSERT(sizeof(struct cork_allow_value) == 48);
CORK_ABI_ASSERT(sizeof(struct cork_allow_slot) == 88);
CORK_ABI_ASSERT(sizeof(struct cork_event) == 104);
CORK_ABI_ASSERT(sizeof(struct cork_unix_key) == 112);
CORK_ABI_ASSERT(sizeof(struct cork_unix_value) == 8);
CORK_ABI_ASSERT(sizeof(struct cork_unix_event) == 216);

#endif /* CORK_ABI_H */
