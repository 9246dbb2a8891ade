// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl C glue for hv_vmbus.
 */
#include <linux/hyperv.h>

#include "kmcl_glue.h"

/* True when hv_vmbus found a VMBus host and registered its bus. */
bool kmcl_hv_vmbus_present(void)
{
	return hv_vmbus_exists();
}
