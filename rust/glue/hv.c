// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl C glue for hv_vmbus.
 */
#include <linux/hyperv.h>

#include <kmcl/kmcl.h>

#include "kmcl_glue.h"

/* True when hv_vmbus found a VMBus host and registered its bus. */
bool kmcl_hv_vmbus_present(void)
{
	return hv_vmbus_exists();
}

/*
 * The public header's constants must match the values the Rust side uses
 * (rust/protocol/packet.rs: FLAG_COMPLETION_REQUESTED is what
 * WAIT_FOR_COMPLETION puts on the wire).
 */
static_assert(VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION == 0x1);
