/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading the address a unix-domain connect()/sendmsg() names, for the unix sock_addr hooks.
 *
 * The context of a sock_addr program really points at the kernel's struct
 * bpf_sock_addr_kern (include/linux/filter.h), whose `uaddr` is the kernel's own copy of
 * the caller's sockaddr (a sockaddr_storage on the syscall's stack: net/socket.c
 * move_addr_to_kernel) and `uaddrlen` its length (Linux 6.7+). struct bpf_sock_addr
 * exposes no field of a unix address, so the program reads those two with
 * bpf_probe_read_kernel (which takes the context pointer as a plain address: the loader
 * runs with CAP_PERFMON), at offsets the loader relocates against the running kernel's BTF.
 *
 * The kernel checked the address before the hook ran (net/unix/af_unix.c
 * unix_validate_addr: sun_family is AF_UNIX, 2 < uaddrlen <= sizeof(struct sockaddr_un)),
 * and the hook runs before the kernel looks the name up (unix_find_other), so what is
 * judged is the string the program passed: no working directory, no symlink applied yet.
 */
#ifndef CORK_UNIX_H
#define CORK_UNIX_H

#include "cork_events.h"

#define CORK_AF_UNIX 1
/* offsetof(struct sockaddr_un, sun_path) */
#define CORK_SUN_PATH_OFFSET 2

/* Bounds `n` to [0, max] where the verifier can see it: a length spilled to the stack and
 * reloaded loses what the verifier knew, and clang drops a check it can prove redundant. */
#define CORK_BOUND(n, max)                                                                  \
	({                                                                                  \
		__u32 __n = (n);                                                            \
		asm volatile("" : "+r"(__n));                                               \
		__n <= (max) ? __n : (max);                                                 \
	})

/* Only the fields read here. preserve_access_index makes clang emit CO-RE relocations for
 * them; the `___cork` suffix is a CO-RE flavour, matched to bpf_sock_addr_kern. */
struct bpf_sock_addr_kern___cork {
	void *uaddr;
	__u32 uaddrlen;
} __attribute__((preserve_access_index));

/*
 * Fills `key` (zeroed by the caller) with the name the caller of connect()/sendmsg()
 * passed, the way the kernel will read it: a path ends at its first NUL (unix_mkname_bsd),
 * an abstract name is every byte after the leading NUL (unix_find_abstract). 0 on success.
 */
static __always_inline int cork_unix_name(struct bpf_sock_addr *ctx, struct cork_unix_key *key)
{
	struct bpf_sock_addr_kern___cork *kern = (void *)ctx;
	const __u8 *sun_path = 0;
	__u32 len = 0;
	__u8 first = 0, last = 0;
	long copied;

	if (bpf_probe_read_kernel(&sun_path, sizeof(sun_path), &kern->uaddr) ||
	    bpf_probe_read_kernel(&len, sizeof(len), &kern->uaddrlen) || !sun_path)
		return -1;
	sun_path += CORK_SUN_PATH_OFFSET;
	if (len <= CORK_SUN_PATH_OFFSET || len > CORK_SUN_PATH_OFFSET + CORK_UNIX_NAME_MAX)
		return -1;
	len -= CORK_SUN_PATH_OFFSET; /* 1..108 bytes of sun_path given */
	if (bpf_probe_read_kernel(&first, 1, sun_path))
		return -1;

	if (first == 0) {
		key->kind = CORK_UNIX_ABSTRACT;
		key->len = len - 1;
		if (len > 1 && bpf_probe_read_kernel(key->name,
						     CORK_BOUND(len - 1, CORK_UNIX_NAME_MAX - 1),
						     sun_path + 1))
			return -1;
		return 0;
	}

	key->kind = CORK_UNIX_PATH;
	/* Copies up to the first NUL and returns the bytes written, NUL included; when no NUL
	 * comes before the last byte it writes a NUL over that byte, so read it again. */
	copied = bpf_probe_read_kernel_str(key->name, CORK_BOUND(len, CORK_UNIX_NAME_MAX), sun_path);
	if (copied < 0)
		return -1;
	if ((__u32)copied < len) {
		key->len = copied - 1;
		return 0;
	}
	if (bpf_probe_read_kernel(key->name, CORK_BOUND(len, CORK_UNIX_NAME_MAX), sun_path) ||
	    bpf_probe_read_kernel(&last, 1, sun_path + len - 1))
		return -1;
	key->len = last ? len : len - 1;
	return 0;
}

#endif
