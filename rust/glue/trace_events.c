// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl's trace events: instantiated here, with the rust_do_trace_<event>()
 * entry points rust/trace.rs calls.
 */
#define CREATE_TRACE_POINTS
#define CREATE_RUST_TRACE_POINTS
#include "kmcl_trace.h"
