/* SPDX-License-Identifier: GPL-2.0 */
/* Stands in for <asm/mshyperv.h>: see kshim.h. */
#include "../kshim.h"
