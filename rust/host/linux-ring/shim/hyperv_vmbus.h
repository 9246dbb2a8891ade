/* SPDX-License-Identifier: GPL-2.0 */
/* Stands in for <hyperv_vmbus.h>: see kshim.h. */
#include "kshim.h"
