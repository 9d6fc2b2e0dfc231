//! The compiled eBPF objects, embedded at build time (userspace/build.rs compiles
//! ebpf/*.bpf.c). Aligned because aya parses them as ELF in place.

pub static SOCK_CREATE: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_create.bpf.o"));
pub static SOCK_ADDR: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_addr.bpf.o"));
pub static SKB: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/skb.bpf.o"));
pub static SOCK_OPS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_ops.bpf.o"));
