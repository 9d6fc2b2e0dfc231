// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * No programs: the maps of one cgroup bottle (cork_maps.h, per-bottle layout), created and
 * pinned in the bottle's directory when this object is loaded. The shared programs reach
 * them through the outer arrays, where the loader puts each at the bottle's id.
 */
#include "cork_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
