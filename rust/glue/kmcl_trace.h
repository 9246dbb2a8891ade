/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kmcl trace events (ftrace: /sys/kernel/tracing/events/kmcl/).
 *
 * The first five mirror the ETW events of Windows' KMCL provider
 * ("Microsoft-Windows-Hyper-V-KMCL", events 1-5); the rest show the
 * channel lifecycle.  Channels are named by their kmcl id, which their
 * debugfs directory and state file show too.
 *
 * Defined here, emitted from Rust (rust/trace.rs) through the
 * rust_do_trace_<event>() functions CREATE_RUST_TRACE_POINTS generates.
 * Strings come from Rust as pointer and length (not NUL-terminated).
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM kmcl

#if !defined(_KMCL_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _KMCL_TRACE_H

#include <linux/tracepoint.h>

/* ETW 1, "Fetching a packet from vmbus". */
TRACE_EVENT(kmcl_packet_fetched,
	TP_PROTO(u32 chan, u64 transaction_id, bool completion, u32 len),
	TP_ARGS(chan, transaction_id, completion, len),
	TP_STRUCT__entry(
		__field(u32, chan)
		__field(u64, transaction_id)
		__field(bool, completion)
		__field(u32, len)
	),
	TP_fast_assign(
		__entry->chan = chan;
		__entry->transaction_id = transaction_id;
		__entry->completion = completion;
		__entry->len = len;
	),
	TP_printk("chan=%u tid=%llu completion=%d len=%u",
		  __entry->chan, __entry->transaction_id,
		  __entry->completion, __entry->len)
);

/* ETW 2, "Sending a packet to vmbus": written to the outgoing ring. */
TRACE_EVENT(kmcl_packet_sent,
	TP_PROTO(u32 chan, u64 transaction_id, u16 type, u32 len,
		 bool completion_requested, bool was_queued),
	TP_ARGS(chan, transaction_id, type, len, completion_requested,
		was_queued),
	TP_STRUCT__entry(
		__field(u32, chan)
		__field(u64, transaction_id)
		__field(u16, type)
		__field(u32, len)
		__field(bool, completion_requested)
		__field(bool, was_queued)
	),
	TP_fast_assign(
		__entry->chan = chan;
		__entry->transaction_id = transaction_id;
		__entry->type = type;
		__entry->len = len;
		__entry->completion_requested = completion_requested;
		__entry->was_queued = was_queued;
	),
	TP_printk("chan=%u tid=%llu type=%u len=%u completion_requested=%d queued=%d",
		  __entry->chan, __entry->transaction_id, __entry->type,
		  __entry->len, __entry->completion_requested,
		  __entry->was_queued)
);

/* ETW 3, "Finish fetching packets": one run of the receive work. */
TRACE_EVENT(kmcl_batch_done,
	TP_PROTO(u32 chan, u32 fetched, u32 allowed),
	TP_ARGS(chan, fetched, allowed),
	TP_STRUCT__entry(
		__field(u32, chan)
		__field(u32, fetched)
		__field(u32, allowed)
	),
	TP_fast_assign(
		__entry->chan = chan;
		__entry->fetched = fetched;
		__entry->allowed = allowed;
	),
	TP_printk("chan=%u fetched=%u allowed=%u",
		  __entry->chan, __entry->fetched, __entry->allowed)
);

/* ETW 4, "Incoming packet quota is hit": delivery stops. */
TRACE_EVENT(kmcl_quota_hit,
	TP_PROTO(u32 chan, u32 outstanding, u32 quota),
	TP_ARGS(chan, outstanding, quota),
	TP_STRUCT__entry(
		__field(u32, chan)
		__field(u32, outstanding)
		__field(u32, quota)
	),
	TP_fast_assign(
		__entry->chan = chan;
		__entry->outstanding = outstanding;
		__entry->quota = quota;
	),
	TP_printk("chan=%u outstanding=%u quota=%u",
		  __entry->chan, __entry->outstanding, __entry->quota)
);

/*
 * ETW 5, "DPC cycle limit is hit": the receive work read its budget of
 * packets and yields (it is queued again).
 */
TRACE_EVENT(kmcl_budget_hit,
	TP_PROTO(u32 chan, u32 fetched),
	TP_ARGS(chan, fetched),
	TP_STRUCT__entry(
		__field(u32, chan)
		__field(u32, fetched)
	),
	TP_fast_assign(
		__entry->chan = chan;
		__entry->fetched = fetched;
	),
	TP_printk("chan=%u fetched=%u", __entry->chan, __entry->fetched)
);

/* A lifecycle step: the event that caused it and the action taken. */
TRACE_EVENT(kmcl_state_change,
	TP_PROTO(u32 chan, const char *event, u32 event_len,
		 const char *action, u32 action_len),
	TP_ARGS(chan, event, event_len, action, action_len),
	TP_STRUCT__entry(
		__field(u32, chan)
		__string_len(event, event, event_len)
		__string_len(action, action, action_len)
	),
	TP_fast_assign(
		__entry->chan = chan;
		__assign_str(event);
		__assign_str(action);
	),
	TP_printk("chan=%u event=%s action=%s",
		  __entry->chan, __get_str(event), __get_str(action))
);

/* kmcl closes a channel because something went wrong. */
TRACE_EVENT(kmcl_channel_failed,
	TP_PROTO(u32 chan, const char *why, u32 why_len),
	TP_ARGS(chan, why, why_len),
	TP_STRUCT__entry(
		__field(u32, chan)
		__string_len(why, why, why_len)
	),
	TP_fast_assign(
		__entry->chan = chan;
		__assign_str(why);
	),
	TP_printk("chan=%u why=%s", __entry->chan, __get_str(why))
);

#endif /* _KMCL_TRACE_H */

/* This part must be outside the include guard. */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE kmcl_trace
#include <trace/define_trace.h>
