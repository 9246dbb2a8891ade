// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl's own C glue that the benchmark compiles too, so that it measures
 * kmcl's ring as kmcl.ko's channels run it beside hv_vmbus's ring code:
 * the ring-page copy (kmcl_ring_copy, for rust/shmem/ring_pages.rs) and
 * the made-up hv_vmbus channel over a kmcl ring.
 */
#include "../rust/glue/pages.c"
#include "../rust/glue/hv_channel.c"
