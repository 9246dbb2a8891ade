/* SPDX-License-Identifier: GPL-2.0 */
/* Stands in for <linux/export.h>: see kshim.h. */
#include "../kshim.h"
