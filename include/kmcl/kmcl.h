/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kmcl: the VMBus Kernel Mode Client Library for Linux - public C header.
 *
 * The channel API of Windows' KMCL (vmbuskernelmodeclientlibapi.h) for
 * Linux kernel modules.  Every KMCL function has a kmcl_ counterpart,
 * exported with EXPORT_SYMBOL_NS_GPL in the "KMCL" namespace (a user says
 * MODULE_IMPORT_NS("KMCL")) and reachable through the interface tables of
 * kmcl_query_interface().  Documentation/kmcl-mapping.rst maps each KMCL
 * name to its kmcl function and lists what differs from Windows.
 *
 * Conventions:
 *  - Functions return 0 or a negative errno where KMCL returns NTSTATUS
 *    (Documentation/status.rst gives the errno of each NTSTATUS), and also
 *    where KMCL returns VOID but kmcl can refuse a call (the error is then
 *    informative; ignoring it is as safe as on Windows).
 *  - Contexts: "process" is KMCL's PASSIVE_LEVEL (may sleep), "any" is up
 *    to DISPATCH_LEVEL (softirq, or with a spinlock held).  Packet
 *    callbacks run in softirq context (BH work) unless the channel
 *    processes incoming packets at passive; state callbacks run in process
 *    context, one at a time per channel, with no kmcl lock held.
 *  - Every function documented "process, may sleep" checks its caller:
 *    from atomic context (hard or soft interrupt, bottom halves or
 *    interrupts disabled, a spinlock held or preemption disabled where the
 *    kernel counts it) it returns -EINVAL, does nothing and logs one
 *    rate-limited line naming the function and the channel's module.
 *    Those that change the channel's state (enable, disable, pause,
 *    start, cleanup, the init setters, save and restore) return -EDEADLK,
 *    doing nothing, when called from one of the channel's own state
 *    callbacks, or at passive from its packet callbacks and completion
 *    routines, where they would wait for the callback itself; so do those
 *    of a primary channel called from a state callback of one of its
 *    sub-channels (a primary's callback may disable its sub-channels, so
 *    the reverse order could deadlock).
 *  - A NULL handle is refused with -EINVAL (or ignored by functions
 *    without a return value, NULL from those returning a pointer).  With
 *    checked handles (module parameter checked_handles, on by default) so
 *    are, with one rate-limited log line, a channel used after its
 *    cleanup, a made-up pointer, a packet object passed as a channel or
 *    the reverse, a packet object sent again or freed while in flight,
 *    and one freed twice; incoming packet handles completed, failed or
 *    deferred twice are refused always.  Checking cannot make a call that
 *    races with the handle's free in another thread safe.
 *  - GUIDs are guid_t, which has Windows' GUID memory layout.
 *
 * Rust drivers use include/kmcl/rust/kmcl.rs instead, a safe wrapper over
 * this ABI.
 */
#ifndef _KMCL_KMCL_H
#define _KMCL_KMCL_H

#include <linux/types.h>
#include <linux/uuid.h>

struct module;
struct page;

/* VmbPacketSend() and friends: Flags. */
#define VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION		0x1
#define VMBUS_CHANNEL_FORMAT_FLAG_FORCE_MDL_LENGTH		0x2
#define VMBUS_CHANNEL_FORMAT_FLAG_PAGED_BUFFER			0x4

/* VmbChannelCreateGpadlFromBuffer()/FromMdl(): Flags. */
#define VMBUS_CHANNEL_GPADL_FLAG_READ_ONLY			0x1

/* VmbChannelInitSetFlags(). */
#define VMBUS_CHANNEL_INIT_FLAG_IS_PIPE				0x1

/* VmbServerChannelInitSetFlags(). */
#define VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER		0x1
#define VMBUS_SERVER_CHANNEL_INIT_FLAG_ENUMERATE_DEVICE_INTERFACE 0x2
#define VMBUS_SERVER_CHANNEL_INIT_FLAG_OFFER_AS_PIPE		0x4
#define VMBUS_SERVER_CHANNEL_INIT_FLAG_FORCE_NEW_CHANNEL	0x8
#define VMBUS_SERVER_CHANNEL_INIT_FLAG_TLNPI_PROVIDER_OFFER	0x10

/* EvtVmbChannelProcessPacket(): Flags. */
#define VMBUS_CHANNEL_PROCESS_PACKET_FLAG_EXTERNAL_DATA		0x1
/* kmcl's own: the packet names ranges of a transfer-page set. */
#define KMCL_PROCESS_PACKET_FLAG_TRANSFER_PAGES			0x10000

/* VmbChannelPacketGetExternalData(): Flags. */
#define VMBUS_CHANNEL_PACKET_EXTERNAL_DATA_FLAG_READ_ONLY	0x1

/* Largest "extra data" of an offer (Linux: MAX_USER_DEFINED_BYTES). */
#define VMBUS_SERVER_CHANNEL_INIT_MAXIMUM_OFFER_DATA		120

/* Longest friendly name, in bytes. */
#define KMCL_FRIENDLY_NAME_MAX					64

/* A channel endpoint (KMCL VMBCHANNEL); opaque. */
struct kmcl_channel;

/* An outgoing packet object (KMCL VMBPACKET); opaque. */
struct kmcl_packet;

/*
 * An incoming packet (KMCL VMBPACKETCOMPLETION); opaque.  Valid from
 * EvtVmbChannelProcessPacket until it is completed, deferred or failed.
 */
struct kmcl_incoming;

/**
 * struct kmcl_mdl - kmcl's counterpart of a Windows MDL.
 * @pages:    the pages, in order.
 * @nr_pages: number of entries in @pages.
 * @offset:   byte offset of the data in the first page.
 * @length:   bytes of data.
 * @next:     the next MDL of a chain (an MDL's Next), or NULL.
 *
 * A page array with an offset and a length describes the same thing as an
 * MDL and maps one-to-one to a VMBus GPA range; a chain of them is a
 * packet's list of ranges (at most 256 when kmcl sends them, at most the
 * receiver's kmcl_channel_init_set_maximum_external_data() chain length).
 * Set @next to NULL for a single MDL.
 */
struct kmcl_mdl {
	struct page **pages;
	u32 nr_pages;
	u32 offset;
	u32 length;
	struct kmcl_mdl *next;
};

/**
 * struct kmcl_transfer_range - one range of a transfer-page set.
 * @byte_count:  bytes in the range (at least 1).
 * @byte_offset: offset of its first byte from the start of the set.
 *
 * Laid out as Linux's struct vmtransfer_page_range (the VMBus wire
 * format: little-endian).  kmcl's extension; KMCL has no transfer pages.
 */
struct kmcl_transfer_range {
	u32 byte_count;
	u32 byte_offset;
};

/**
 * struct kmcl_page_buffer - a range within one page (kmcl's extension).
 * @len:    bytes, at least 1; @offset + @len at most the page size.
 * @offset: offset of the first byte in the page.
 * @pfn:    the page's frame number.
 *
 * Laid out as Linux's struct hv_page_buffer; an array of them is what
 * netvsc sends a frame's fragments as (one GPA range each).
 */
struct kmcl_page_buffer {
	u32 len;
	u32 offset;
	u64 pfn;
};

/* Callbacks (KMCL EVT_VMB_*). */
typedef int (*kmcl_evt_channel_opened)(struct kmcl_channel *channel);
typedef void (*kmcl_evt_channel_state)(struct kmcl_channel *channel);
typedef void (*kmcl_evt_channel_pnp_failure)(struct kmcl_channel *channel,
					     int status);
typedef void (*kmcl_evt_process_packet)(struct kmcl_channel *channel,
					struct kmcl_incoming *packet,
					const void *buffer, u32 length,
					u32 flags);
typedef void (*kmcl_evt_processing_complete)(struct kmcl_channel *channel,
					     u32 packets);
typedef void (*kmcl_evt_subchannel_offered)(struct kmcl_channel *primary,
					    u16 index);
typedef void (*kmcl_evt_packet_completion)(struct kmcl_packet *packet,
					   int status, const void *buffer,
					   u32 length);
typedef int (*kmcl_evt_save_packet)(struct kmcl_channel *channel,
				    struct kmcl_incoming *packet,
				    void *buffer, u32 size, u32 *needed);
typedef int (*kmcl_evt_restore_packet)(struct kmcl_channel *channel,
				       const void *lib_buffer, u32 lib_size,
				       const void *buffer, u32 size);

#define KMCL_STATE_CALLBACKS_VERSION 1

/**
 * struct kmcl_state_callbacks - KMCL VMB_CHANNEL_STATE_CHANGE_CALLBACKS.
 * @version:      KMCL_STATE_CALLBACKS_VERSION.
 * @size:         sizeof(struct kmcl_state_callbacks).
 * @opened:       EvtChannelOpened: connected; an error abandons the
 *                connection.  Process context.
 * @closed:       EvtChannelClosed: the connection ended.
 * @suspend:      EvtChannelSuspend: packets stop flowing.
 * @started:      EvtChannelStarted: packets are about to flow.
 * @post_started: EvtChannelPostStarted: packets flow.
 *
 * Fill with kmcl_state_callbacks_init(), then set the callbacks wanted.
 */
struct kmcl_state_callbacks {
	u32 version;
	u32 size;
	kmcl_evt_channel_opened opened;
	kmcl_evt_channel_state closed;
	kmcl_evt_channel_state suspend;
	kmcl_evt_channel_state started;
	kmcl_evt_channel_state post_started;
};

/**
 * kmcl_state_callbacks_init() - VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT.
 * @callbacks: the structure to initialise: version and size set, every
 *             callback NULL.
 */
static inline void kmcl_state_callbacks_init(struct kmcl_state_callbacks *callbacks)
{
	*callbacks = (struct kmcl_state_callbacks) {
		.version = KMCL_STATE_CALLBACKS_VERSION,
		.size = sizeof(*callbacks),
	};
}

/**
 * kmcl_channel_allocate() - VmbChannelAllocate: a new disabled channel.
 * @owner:     THIS_MODULE.  If that module is unloaded with the channel
 *             still allocated, kmcl disables and frees it (and logs it)
 *             without calling into the module again.
 * @is_server: true for a server endpoint (VSP), false for a client (VSC).
 * @channel:   receives the handle.
 *
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0, -EINVAL (NULL @channel), -ENOMEM, -ENODEV (kmcl unloading).
 */
int kmcl_channel_allocate(struct module *owner, bool is_server,
			  struct kmcl_channel **channel);

/**
 * kmcl_channel_cleanup() - VmbChannelCleanup: frees a channel.
 * @channel: the channel; disabled first if it is enabled.
 *
 * Packets allocated for the channel must be freed first.  A channel
 * cleaned up twice is reported in the kernel log.
 * Context: process, may sleep (refused from atomic context and from the
 * channel's own state callbacks, with a line in the kernel log).
 */
void kmcl_channel_cleanup(struct kmcl_channel *channel);

/**
 * kmcl_channel_enable() - VmbChannelEnable: offer (server) or open (client).
 * @channel: a disabled channel.
 *
 * Returns at once; the state callbacks report progress.  A client enabled
 * before a matching offer exists waits for it.
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EBUSY (already enabled), -EEXIST (a server with the same
 * interface type and instance is enabled), -ENOMEM.
 */
int kmcl_channel_enable(struct kmcl_channel *channel);

/**
 * kmcl_channel_disable() - VmbChannelDisable: close (client) or rescind
 * (server), waiting until the channel is torn down.
 * @channel: an enabled channel.
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EBUSY (not enabled).
 */
int kmcl_channel_disable(struct kmcl_channel *channel);

/**
 * kmcl_channel_pause() - VmbChannelPause: stop delivering packets, and
 * wait for delivered ones to be completed.
 * @channel: the channel.
 *
 * As KMCL's (which returns nothing): pausing a paused channel does
 * nothing; a disabled channel is paused when it is next enabled (it
 * connects, and gets Opened, but not Started until kmcl_channel_start()).
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0.
 */
int kmcl_channel_pause(struct kmcl_channel *channel);

/**
 * kmcl_channel_start() - VmbChannelStart: resume a paused channel.
 * @channel: an enabled channel.
 *
 * As KMCL's (which returns nothing): starting a channel that is not
 * paused does nothing.
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EBUSY (disabled).
 */
int kmcl_channel_start(struct kmcl_channel *channel);

/*
 * Init-time settings (KMCL VmbChannelInitSet*, VmbClientChannelInitSet*,
 * VmbServerChannelInitSet*): only while the channel is disabled
 * (-EBUSY otherwise).  Context: process, may sleep (-EINVAL from atomic
 * context); -EDEADLK from the channel's own state callbacks.  Client-only
 * and server-only setters return -EINVAL on a channel of the other role.
 */

/**
 * kmcl_channel_init_set_maximum_packet_size() - the largest payload the
 * driver sends on the channel (KMCL VmbChannelInitSetMaximumPacketSize).
 * @channel: a disabled channel.
 * @size:    bytes, greater than 0.
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (NULL @channel, @size 0), -EBUSY (enabled).
 */
int kmcl_channel_init_set_maximum_packet_size(struct kmcl_channel *channel,
					      u32 size);
/**
 * kmcl_channel_init_set_maximum_external_data() - the most external data
 * one incoming packet may describe (KMCL
 * VmbChannelInitSetMaximumExternalData); GPA-direct packets beyond it fail
 * the channel (untrusted range lists).
 * @channel:      a disabled channel.
 * @size:         bytes, greater than 0.
 * @chain_length: MDLs (ranges), greater than 0.
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (NULL @channel, @size or @chain_length 0), -EBUSY
 * (enabled).
 */
int kmcl_channel_init_set_maximum_external_data(struct kmcl_channel *channel,
						u32 size, u32 chain_length);
/**
 * kmcl_channel_init_set_client_context_size() - zeroed bytes kmcl
 * allocates with every incoming packet for the driver (KMCL
 * VmbChannelInitSetClientContextSize).
 * @channel: a disabled channel.
 * @size:    bytes, at most 4096 (allocated in softirq context).
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (NULL @channel, @size above 4096), -EBUSY (enabled).
 */
int kmcl_channel_init_set_client_context_size(struct kmcl_channel *channel,
					      u32 size);
/**
 * kmcl_channel_init_set_flags() - VmbChannelInitSetFlags.
 * @channel: a disabled channel.
 * @flags:   VMBUS_CHANNEL_INIT_FLAG_* bits.
 *
 * kmcl does not implement pipe mode: VMBUS_CHANNEL_INIT_FLAG_IS_PIPE is
 * refused rather than accepted and ignored.
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (NULL @channel, unknown bits), -EOPNOTSUPP
 * (IS_PIPE), -EBUSY (enabled).
 */
int kmcl_channel_init_set_flags(struct kmcl_channel *channel, u32 flags);
/**
 * kmcl_channel_init_set_friendly_name() - VmbChannelInitSetFriendlyName:
 * the name kmcl shows in logs, debugfs and trace events.
 * @channel: a disabled channel.
 * @name:    a NUL-terminated string of at most 64 bytes, copied.
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (NULL @channel or @name, @name too long), -EBUSY
 * (enabled).
 */
int kmcl_channel_init_set_friendly_name(struct kmcl_channel *channel,
					const char *name);

/**
 * kmcl_channel_init_set_process_packet_callbacks() - packet callbacks.
 * @channel:             the channel.
 * @process_packet:      EvtVmbChannelProcessPacket (required).  It owns
 *                       @packet until it calls kmcl_channel_packet_complete(),
 *                       _defer_to_passive() or _fail(), now or later; the
 *                       payload stays valid until then.
 * @complete:            EvtVmbChannelProcessingComplete, or NULL.
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (no @process_packet), -EBUSY, -ENOMEM.
 */
int kmcl_channel_init_set_process_packet_callbacks(struct kmcl_channel *channel,
						   kmcl_evt_process_packet process_packet,
						   kmcl_evt_processing_complete complete);

/**
 * kmcl_channel_init_set_state_change_callbacks() - state callbacks.
 * @channel:   the channel.
 * @callbacks: from kmcl_state_callbacks_init(); copied.
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (NULL, or a version or size kmcl does not know; the
 * log says which), -EBUSY, -ENOMEM.
 */
int kmcl_channel_init_set_state_change_callbacks(struct kmcl_channel *channel,
						 const struct kmcl_state_callbacks *callbacks);

/**
 * kmcl_client_channel_init_set_ring_buffer_page_count() - ring sizes in pages.
 * @channel:  a disabled client channel.
 * @incoming: data pages of the ring the client receives on.
 * @outgoing: data pages of the ring the client sends on.
 *
 * Each is 1 to (U32_MAX >> PAGE_SHIFT) - 1: a ring's size, with its
 * control page, in bytes must fit 32 bits (hv_vmbus's vmbus_open()).
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (a count out of range, a server), -EBUSY (enabled).
 */
int kmcl_client_channel_init_set_ring_buffer_page_count(struct kmcl_channel *channel,
							u32 incoming, u32 outgoing);

/**
 * kmcl_client_channel_init_set_target_pnp() - the offer a client opens.
 * @channel:        a client channel.
 * @interface_type: required.
 * @instance:       NULL: any instance of @interface_type.
 * @pnp_failure:    EvtChannelPnpFailure (hv_vmbus channels), or NULL.
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (server channel, NULL @interface_type), -EBUSY.
 */
int kmcl_client_channel_init_set_target_pnp(struct kmcl_channel *channel,
					    const guid_t *interface_type,
					    const guid_t *instance,
					    kmcl_evt_channel_pnp_failure pnp_failure);

/* kmcl_client_channel_init_set_transport(): where a client looks. */
#define KMCL_TRANSPORT_AUTO					0
#define KMCL_TRANSPORT_LOOPBACK					1
#define KMCL_TRANSPORT_HOST					2

/**
 * kmcl_client_channel_init_set_transport() - which VMBus a client's offer
 * is looked for on (kmcl's own; KMCL takes it from the parent device).
 * @channel:   a client channel.
 * @transport: %KMCL_TRANSPORT_AUTO (the default): kmcl's loopback bus if a
 *             server offers the interface there when the client is
 *             enabled, or if no VMBus host exists; otherwise the host.
 *             %KMCL_TRANSPORT_LOOPBACK: the loopback bus only.
 *             %KMCL_TRANSPORT_HOST: the VMBus host (Hyper-V) only, through
 *             hv_vmbus; without a host the client gets PnpFailure
 *             (-ENODEV).
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (server channel, unknown @transport), -EBUSY.
 */
int kmcl_client_channel_init_set_transport(struct kmcl_channel *channel,
					   u32 transport);

/* kmcl_channel_init_set_target_processor(): no target processor. */
#define KMCL_TARGET_PROCESSOR_NONE				0xffffffffU

/**
 * kmcl_channel_init_set_target_processor() - the CPU that processes the
 * channel's incoming packets (VmbClientChannelInitSetTargetProcessorIndex;
 * kmcl: servers too).
 * @channel:   a channel.
 * @processor: a CPU number: the other endpoint's signals run the channel's
 *             receive work (its softirq "DPC") on that CPU, as VMBus
 *             interrupts a channel's target processor, so sender and
 *             receiver can run on different CPUs; while that CPU is
 *             offline, the signalling CPU.  %KMCL_TARGET_PROCESSOR_NONE
 *             (the default): the CPU the other endpoint signalled from.
 *             Packets processed at passive level run in a worker on any
 *             CPU.
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (NULL @channel, @processor >= nr_cpu_ids), -EBUSY
 * (enabled).
 */
int kmcl_channel_init_set_target_processor(struct kmcl_channel *channel,
					   u32 processor);

/**
 * kmcl_channel_init_set_primary_channel() - makes a channel a sub-channel
 * of another (VmbChannelInitSetPrimaryChannel, KMCL V5).
 * @channel: a disabled channel.
 * @primary: a channel of the same role that is no sub-channel itself.
 *
 * Sub-channels carry a device's traffic on more rings and CPUs (a network
 * VSC's vRSS queues, a storage VSC's per-CPU queues); each has its own
 * callbacks, rings, limits and target processor.  A server sub-channel,
 * when enabled, is offered as the next sub-channel (index 1, 2, ...) of
 * its primary's connection, whose client hears of it through the
 * sub-channel callback; the server makes them when its client asks, in
 * the device's own protocol, as VMBus servers do.  A client sub-channel,
 * when enabled, opens a free sub-channel offer of its primary's
 * connection (now, or when the server makes one).  When the primary's
 * connection ends, so do its sub-channels' (both sides get Closed and the
 * offers are withdrawn); a server disabling one sub-channel closes only
 * that one.  Enabling either kind needs the primary connected (-ENOTCONN).
 * On a VMBus host (hv_vmbus) a client primary's sub-channels are the
 * host's sub-channel offers for its device (vmbus_set_sc_create_callback()),
 * each opened with vmbus_open() on its own rings, its interrupt on the CPU
 * hv_vmbus chose for it (sysfs channels/<relid>/cpu moves it).  hv_vmbus
 * closes a sub-channel only with its primary: one whose client left is not
 * offered again until the primary reopens, and the primary's client
 * leaving closes every sub-channel's client first.  A sub-channel the host
 * rescinds closes its client at its next signal (hv_vmbus tells drivers
 * nothing else).
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (NULL, the channel itself, another role, a primary
 * that is a sub-channel), -EBUSY (enabled).
 */
int kmcl_channel_init_set_primary_channel(struct kmcl_channel *channel,
					  struct kmcl_channel *primary);

/**
 * kmcl_channel_init_set_subchannel_callback() - the callback that tells a
 * client primary channel of each sub-channel its server offers (kmcl's
 * own; Linux's vmbus_set_sc_create_callback()).
 * @channel: a disabled client channel.
 * @cb:      called in process context with the primary channel and the
 *           sub-channel's index (1, 2, ...) while the primary is
 *           connected; it may allocate, set up and enable the client
 *           sub-channel right there.
 *
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0, -EINVAL (NULL, a server channel), -EBUSY (enabled), -ENOMEM.
 */
int kmcl_channel_init_set_subchannel_callback(struct kmcl_channel *channel,
					      kmcl_evt_subchannel_offered cb);

/**
 * kmcl_channel_get_subchannel_index() - which sub-channel of its primary's
 * connection a channel is (kmcl's own).
 * @channel: a channel.
 *
 * Context: any.
 * Return: the index (1, 2, ...; 0 for a primary channel) while connected,
 * -ENOTCONN otherwise, -EINVAL for NULL.
 */
int kmcl_channel_get_subchannel_index(struct kmcl_channel *channel);

/**
 * kmcl_server_channel_init_set_target_interface_id() - the interface type
 * and instance a server channel offers, by which a client opens it (KMCL
 * VmbServerChannelInitSetTargetInterfaceId).
 * @channel:        a disabled server channel.
 * @interface_type: the interface (class) GUID.
 * @instance:       the instance GUID.
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (client channel, a NULL argument), -EBUSY (enabled).
 */
int kmcl_server_channel_init_set_target_interface_id(struct kmcl_channel *channel,
						     const guid_t *interface_type,
						     const guid_t *instance);
/**
 * kmcl_server_channel_init_set_flags() - VmbServerChannelInitSetFlags.
 * @channel: a disabled server channel.
 * @flags:   VMBUS_SERVER_CHANNEL_INIT_FLAG_* bits.
 *
 * VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER is what every kmcl offer
 * is (kmcl's servers offer on its in-guest loopback VMBus); the other
 * flags ask for what kmcl does not do (pipe offers, a Windows device
 * interface, a forced new channel, a TLNPI provider offer) and are refused
 * (Documentation/kmcl-mapping.rst).
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (client channel, unknown bits), -EOPNOTSUPP (a flag
 * other than LOOPBACK_OFFER), -EBUSY (enabled).
 */
int kmcl_server_channel_init_set_flags(struct kmcl_channel *channel, u32 flags);
/**
 * kmcl_server_channel_init_set_target_vtl() - only clients running in @vtl
 * see the offer (default 0; kmcl's clients run in VTL 0).
 * @channel: a server channel.
 * @vtl:     0 to 15.
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (client channel, @vtl above 15), -EBUSY (enabled).
 */
int kmcl_server_channel_init_set_target_vtl(struct kmcl_channel *channel, u8 vtl);
/**
 * kmcl_server_channel_init_set_mmio_megabytes() - MMIO space for the device.
 * @channel:            a server channel.
 * @megabytes:          MiB required.
 * @optional_megabytes: MiB more if available.
 *
 * On the loopback bus the space is zeroed memory that the client and the
 * server are both given by kmcl_channel_get_mmio_space() while connected
 * (so a VSP can act as the device behind it).
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (client channel), -EBUSY (enabled).
 */
int kmcl_server_channel_init_set_mmio_megabytes(struct kmcl_channel *channel,
						u16 megabytes, u16 optional_megabytes);
/**
 * kmcl_server_channel_init_set_save_restore_packet_callbacks() - how a
 * server saves and restores the packets it holds across a save (KMCL
 * VmbServerChannelInitSetSaveRestorePacketCallbacks; see
 * Documentation/save-restore.rst).
 * @channel: a disabled server channel.
 * @save:    called for each held packet during a save, or NULL.
 * @restore: called for each saved packet on restore, or NULL.
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (client channel), -EBUSY (enabled).
 */
int kmcl_server_channel_init_set_save_restore_packet_callbacks(struct kmcl_channel *channel,
							       kmcl_evt_save_packet save,
							       kmcl_evt_restore_packet restore);
/**
 * kmcl_server_channel_init_set_vmbus_handle() - the loopback bus the
 * channel is on (kmcl: clients too; default: kmcl's own loopback bus).
 * @channel: a channel.
 * @handle:  a kernel handle from kmcl_convert_vmbus_handle_to_kernel_handle().
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (NULL @channel), -ENOENT (no such bus), -EBUSY
 * (enabled).
 */
int kmcl_server_channel_init_set_vmbus_handle(struct kmcl_channel *channel,
					      void *handle);

/**
 * kmcl_channel_set_incoming_processing_at_passive() - deliver incoming
 * packets in process context (a workqueue) instead of softirq context
 * (KMCL VmbChannelSetIncomingProcessingAtPassive).
 * @channel:    a disabled channel.
 * @at_passive: true for process context.
 *
 * Unlike KMCL, only while the channel is disabled, so that its receive
 * work always runs in one context.
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (NULL @channel), -EBUSY (enabled).
 */
int kmcl_channel_set_incoming_processing_at_passive(struct kmcl_channel *channel,
						    bool at_passive);
/**
 * kmcl_channel_set_transaction_quota() - VmbChannelSetTransactionQuota.
 * @channel: a channel.
 * @quota:   most incoming packets the driver may hold uncompleted; greater
 *           than 0, as KMCL requires (a channel starts without a quota;
 *           U32_MAX is as good as none).  Lowering it below what is held
 *           stops delivery until enough packets are completed.
 *
 * Context: any.
 * Return: 0, -EINVAL (NULL @channel, @quota 0).
 */
int kmcl_channel_set_transaction_quota(struct kmcl_channel *channel, u32 quota);
/**
 * kmcl_channel_set_interrupt_latency() - VmbChannelSetInterruptLatency.
 * @channel:  a connected channel (from Opened until Closed).
 * @latency:  in 100 ns units.  On the loopback bus, signals to the other
 *            endpoint are delayed by it (rounded up to the timer tick) and
 *            those made meanwhile merged into one; 0: signal at once.  On
 *            a VMBus host's channel, 0 signals the host directly
 *            (hv_vmbus's low_latency: the monitor page bypassed) and any
 *            other value through the channel's monitor page, at the
 *            latency the host set for it (hv_vmbus lets a driver neither
 *            read nor change that).  Each connection starts with 0 on the
 *            loopback bus and with the monitor page on a host channel.
 * @original: NULL, or receives the latency set before on this connection
 *            (0 before the first call).
 *
 * Context: any.
 * Return: 0, -EINVAL (NULL @channel), -ENOTCONN (not connected).
 */
int kmcl_channel_set_interrupt_latency(struct kmcl_channel *channel,
				       u16 latency, u16 *original);

/* Channel information.  Context: any. */

/**
 * kmcl_channel_get_interface_instance() - VmbChannelGetInterfaceInstance.
 * @channel:  a channel.
 * @instance: receives the channel's instance GUID (a server's as set, a
 *            client's once it is bound to an offer).
 *
 * Does nothing for a NULL argument.
 * Context: any.
 */
void kmcl_channel_get_interface_instance(struct kmcl_channel *channel,
					 guid_t *instance);
/**
 * kmcl_channel_set_pointer() - VmbChannelSetPointer: a pointer of the
 * driver's, kept with the channel.
 * @channel: a channel.
 * @pointer: anything; kmcl does not use it.
 *
 * Does nothing for a NULL @channel.
 * Context: any.
 */
void kmcl_channel_set_pointer(struct kmcl_channel *channel, void *pointer);
/**
 * kmcl_channel_get_pointer() - VmbChannelGetPointer.
 * @channel: a channel.
 *
 * Context: any.
 * Return: what kmcl_channel_set_pointer() stored last; NULL before that or
 * for a NULL @channel.
 */
void *kmcl_channel_get_pointer(struct kmcl_channel *channel);
/**
 * kmcl_channel_get_mmio_space() - VmbChannelGetMmioSpace.
 * @channel: a connected channel (from Opened until Closed).
 * @address: receives the space's kernel virtual address (on a VMBus host:
 *           the reserved range, mapped with ioremap()).
 * @size:    receives its size in bytes.
 *
 * Also on a loopback server channel: the memory its client is given.
 * Context: any.
 * Return: 0, -EINVAL (NULL argument), -ENOTCONN (not connected),
 * -ENODATA (the offer has no MMIO space).
 */
int kmcl_channel_get_mmio_space(struct kmcl_channel *channel, void **address,
				u64 *size);

/**
 * kmcl_channel_get_mmio_physical() - where the MMIO space is: KMCL's
 * VmbChannelGetMmioSpace MmioAddress as its parameter describes it, the
 * guest physical address (kmcl's extension; kmcl_channel_get_mmio_space()
 * gives the kernel mapping).
 * @channel: a connected channel (from Opened until Closed).
 * @start:   receives the physical address of the space's first byte (on a
 *           VMBus host: the range vmbus_allocate_mmio() reserved, what a
 *           driver tells the host, e.g. where a synthetic video device's
 *           VRAM is).
 * @size:    receives its size in bytes.
 *
 * In kmcl's version 2 tables (struct kmcl_v2_methods).
 * Context: any.
 * Return: 0, -EINVAL (NULL argument), -ENOTCONN (not connected),
 * -ENODATA (the offer has no MMIO space), -EOPNOTSUPP (on the loopback
 * bus: its space is ordinary memory with no physical range).
 */
int kmcl_channel_get_mmio_physical(struct kmcl_channel *channel, u64 *start,
				   u64 *size);

/* Incoming packets: the handle given to EvtVmbChannelProcessPacket. */

/**
 * kmcl_channel_packet_complete() - VmbChannelPacketComplete.
 * @packet: the packet; invalid afterwards, whatever the result.
 * @buffer: completion payload sent back if the sender asked for one.
 * @length: bytes in @buffer.
 *
 * Context: any.
 * Return: 0, -ENOMEM (the completion could not be queued),
 * -EINVAL (NULL @buffer with a length; completed empty), -EOVERFLOW
 * (@length more than the ring to the sender can ever hold; completed
 * empty, so that the sender is not left waiting), -ENODEV (the other
 * endpoint keeps sending without reading completions: kmcl closed the
 * channel).
 */
int kmcl_channel_packet_complete(struct kmcl_incoming *packet,
				 const void *buffer, u32 length);
/**
 * kmcl_channel_packet_defer_to_passive() - redeliver @packet to
 * EvtVmbChannelProcessPacket in process context.
 * @packet: the packet, from within EvtVmbChannelProcessPacket.
 */
void kmcl_channel_packet_defer_to_passive(struct kmcl_incoming *packet);
/**
 * kmcl_channel_packet_fail() - VmbChannelPacketFail: the packet cannot be
 * handled; delivery stops and the connection closes.  No completion.
 * @packet: the packet.
 */
void kmcl_channel_packet_fail(struct kmcl_incoming *packet);
/**
 * kmcl_channel_packet_get_client_context() - the packet's context area for
 * the driver (KMCL V2 VmbChannelPacketGetClientContext).
 * @packet: an incoming packet the driver holds (given to its process-packet
 *          callback and not yet completed, deferred or failed).
 * @size:   NULL, or receives the area's size: the channel's
 *          kmcl_channel_init_set_client_context_size(), 0 without one.
 *
 * The area is zeroed when the packet arrives and is the driver's until it
 * gives the packet back; a packet deferred to passive keeps its area.
 * Not in kmcl's V1 interface table (KMCL adds it in V2); in kmcl's
 * version 2 tables (struct kmcl_v2_methods).
 * Context: any.
 * Return: the area, or NULL for a channel without one, a NULL @packet or a
 * handle kmcl has not lent (logged).
 */
void *kmcl_channel_packet_get_client_context(struct kmcl_incoming *packet,
					     u32 *size);

/**
 * kmcl_channel_packet_get_external_data() - VmbChannelPacketGetExternalData.
 * @packet: a packet delivered with VMBUS_CHANNEL_PROCESS_PACKET_FLAG_EXTERNAL_DATA.
 * @flags:  0 or VMBUS_CHANNEL_PACKET_EXTERNAL_DATA_FLAG_READ_ONLY.
 * @mdl:    receives the sender's pages, offset and length, valid until the
 *          packet is completed; reach them with kmap_local_page().
 *
 * The range list was checked against what the sender described for this
 * transaction and against the channel's maximum external data before the
 * packet was delivered.
 *
 * Context: any.
 * Return: 0, -ENODATA (no external data), -EINVAL.
 */
int kmcl_channel_packet_get_external_data(struct kmcl_incoming *packet,
					  u32 flags, struct kmcl_mdl **mdl);

/**
 * kmcl_channel_packet_get_transfer_pages() - the ranges a transfer-page
 * packet names (kmcl's extension).
 * @packet:  a packet delivered with KMCL_PROCESS_PACKET_FLAG_TRANSFER_PAGES.
 * @set_id:  receives the transfer-page set the ranges are in.
 * @ranges:  receives the ranges, valid until the packet is given back.
 * @count:   receives the number of ranges.
 *
 * The sender delivered the data into the set: the ranges are offsets into
 * the buffer the driver registered with
 * kmcl_channel_register_transfer_page_set().  Each was checked before the
 * packet was delivered: the set is registered, every range is non-empty
 * and inside it, at most 1024 ranges.  Completing the packet tells the
 * sender the ranges are free again (Linux netvsc's receive completion).
 * Context: any.
 * Return: 0, -ENODATA (not a transfer-page packet), -EINVAL (a NULL
 * argument or a handle kmcl has not lent).
 */
int kmcl_channel_packet_get_transfer_pages(struct kmcl_incoming *packet,
					   u16 *set_id,
					   const struct kmcl_transfer_range **ranges,
					   u32 *count);

/* Outgoing packets. */

/**
 * kmcl_packet_allocate() - VmbPacketAllocate: an outgoing packet object.
 * @channel: the channel the packet will be sent on.
 *
 * Free it with kmcl_packet_free() once it is not in flight (a sent packet
 * comes back to its completion routine first).
 * Context: any (allocates with GFP_ATOMIC).
 * Return: the packet, or NULL (NULL @channel, out of memory).
 */
struct kmcl_packet *kmcl_packet_allocate(struct kmcl_channel *channel);
/**
 * kmcl_packet_free() - VmbPacketFree.
 * @packet: a packet from kmcl_packet_allocate() or
 *          kmcl_packet_initialize(), not in flight; NULL does nothing.
 *
 * Ends a kmcl_packet_initialize() packet too (its memory stays the
 * driver's).  With kmcl.checked_handles=1 (the default) a handle kmcl did
 * not hand out, or freed already, is refused and logged.
 * Context: any.
 */
void kmcl_packet_free(struct kmcl_packet *packet);
/**
 * kmcl_channel_sizeof_packet() - VmbChannelSizeofPacket.
 * @channel: a channel (the size is the same for all).
 *
 * Context: any.
 * Return: the bytes kmcl_packet_initialize() needs for a packet object.
 */
u32 kmcl_channel_sizeof_packet(struct kmcl_channel *channel);

/**
 * kmcl_packet_initialize() - VmbPacketInitialize: a packet object in the
 * caller's memory.
 * @channel: the channel.
 * @buffer:  at least kmcl_channel_sizeof_packet() bytes, pointer-aligned,
 *           kept until kmcl_packet_free().
 * @size:    bytes in @buffer.
 * @packet:  receives the handle.
 *
 * Return: 0, -EINVAL (too small, misaligned or NULL).
 */
int kmcl_packet_initialize(struct kmcl_channel *channel, void *buffer,
			   u32 size, struct kmcl_packet **packet);

/**
 * kmcl_packet_get_channel() - VmbPacketGetChannel.
 * @packet: an outgoing packet.
 *
 * Context: any.
 * Return: the channel @packet was allocated for; NULL for a NULL @packet.
 */
struct kmcl_channel *kmcl_packet_get_channel(struct kmcl_packet *packet);
/**
 * kmcl_packet_set_pointer() - VmbPacketSetPointer: a pointer of the
 * driver's, kept with the packet (cleared when it is allocated again).
 * @packet:  an outgoing packet.
 * @pointer: anything; kmcl does not use it.
 *
 * Does nothing for a NULL @packet.
 * Context: any.
 */
void kmcl_packet_set_pointer(struct kmcl_packet *packet, void *pointer);
/**
 * kmcl_packet_get_pointer() - VmbPacketGetPointer.
 * @packet: an outgoing packet.
 *
 * Context: any.
 * Return: what kmcl_packet_set_pointer() stored last; NULL before that or
 * for a NULL @packet.
 */
void *kmcl_packet_get_pointer(struct kmcl_packet *packet);
/**
 * kmcl_packet_set_completion_routine() - EvtVmbPacketCompletionRoutine.
 * @packet:  a packet not in flight.
 * @routine: gets the packet back when its transaction is over (softirq or
 *           process context) with 0, or -ENODEV when the connection ended
 *           first.  NULL: kmcl frees the packet then.
 */
void kmcl_packet_set_completion_routine(struct kmcl_packet *packet,
					kmcl_evt_packet_completion routine);

/**
 * kmcl_packet_send() - VmbPacketSend (in-band).
 * @packet: a packet not in flight; kmcl's until its routine runs.
 * @buffer: the payload, copied before this returns.
 * @length: bytes in @buffer (<= the maximum packet size).
 * @mdl:    external data (a GPA-direct packet), or NULL; needs
 *          WAIT_FOR_COMPLETION, and its pages stay valid until the
 *          routine runs.
 * @flags:  VMBUS_CHANNEL_FORMAT_FLAG_*.  With WAIT_FOR_COMPLETION the
 *          routine runs when the other endpoint completes the packet,
 *          otherwise once it is in the ring.  A full ring queues it,
 *          up to 1 MiB (or four times the ring if larger) of payload.
 *
 * Context: any.
 * Return: 0 (the routine will run), or -ENOTCONN, -EINVAL (unknown flag,
 * too long), -ENOMEM, -ENOBUFS (the queue is at its limit: try again once
 * routines have run), -ENODEV (the other endpoint read nothing for 2 s
 * with the queue at its limit: kmcl closed the channel): the routine will
 * not run and the packet is the caller's again.
 */
int kmcl_packet_send(struct kmcl_packet *packet, const void *buffer,
		     u32 length, const struct kmcl_mdl *mdl, u32 flags);
/**
 * kmcl_channel_post() - sends an in-band packet nobody waits for, without
 * a packet object (kmcl's extension).
 * @channel: a connected channel.
 * @buffer:  the payload, copied before this returns.
 * @length:  bytes in @buffer (<= the maximum packet size).
 *
 * What kmcl_packet_allocate() and kmcl_packet_send() without
 * WAIT_FOR_COMPLETION and without a routine do, in one call and without
 * the packet object (hv_vmbus's vmbus_sendpacket() without a completion
 * request): the packet is written to the ring, or queued as
 * kmcl_packet_send() queues it.
 * Context: any.
 * Return: 0, -ENOTCONN, -EINVAL (NULL, too long), -ENOMEM, -ENOBUFS,
 * -ENODEV, as kmcl_packet_send().
 */
int kmcl_channel_post(struct kmcl_channel *channel, const void *buffer,
		      u32 length);
/**
 * kmcl_packet_send_with_external_mdl() - VmbPacketSendWithExternalMdl.
 * @packet:     as kmcl_packet_send().
 * @buffer:     the in-band payload.
 * @length:     bytes in @buffer.
 * @mdl:        the external data's memory.
 * @mdl_offset: first byte of @mdl's data sent.
 * @mdl_length: bytes sent; 0: to the end of @mdl's data.
 * @flags:      must include VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION;
 *              VMBUS_CHANNEL_FORMAT_FLAG_FORCE_MDL_LENGTH lets the range
 *              go past @mdl's length up to the end of its last page.
 *
 * Context: any.
 * Return: as kmcl_packet_send(); -EINVAL also when the range leaves @mdl
 * (with FORCE_MDL_LENGTH: its last page).
 */
int kmcl_packet_send_with_external_mdl(struct kmcl_packet *packet,
				       const void *buffer, u32 length,
				       const struct kmcl_mdl *mdl,
				       u32 mdl_offset, u32 mdl_length, u32 flags);
/**
 * kmcl_packet_send_with_external_pfns() - VmbPacketSendWithExternalPfns.
 * @packet:    as kmcl_packet_send().
 * @buffer:    the in-band payload.
 * @length:    bytes in @buffer.
 * @pfns:      page frame numbers of whole pages, valid until the routine
 *             runs.
 * @pfn_count: entries in @pfns.
 * @flags:     must include VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION.
 *
 * Context: any.
 * Return: as kmcl_packet_send(); -EINVAL also for an invalid frame.
 */
int kmcl_packet_send_with_external_pfns(struct kmcl_packet *packet,
					const void *buffer, u32 length,
					const u64 *pfns, u32 pfn_count,
					u32 flags);
/**
 * kmcl_packet_send_with_page_buffers() - sends external data described by
 * an array of page ranges (kmcl's extension; Linux's
 * vmbus_sendpacket_pagebuffer()).
 * @packet:  as kmcl_packet_send().
 * @buffer:  the in-band payload.
 * @length:  bytes in @buffer.
 * @pb:      the ranges, one GPA range each, in order; the pages must stay
 *           allocated until the routine runs.
 * @count:   entries in @pb, 1 to 256.
 * @flags:   must include VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION.
 *
 * The receiver gets the ranges as a chain of struct kmcl_mdl, one per
 * entry (kmcl_channel_packet_get_external_data()); a receiver whose
 * maximum chain length is below @count closes the channel.
 * Context: any.
 * Return: as kmcl_packet_send(); -EINVAL also for an invalid frame, an
 * empty range or one that leaves its page, or @count 0 or above 256.
 */
int kmcl_packet_send_with_page_buffers(struct kmcl_packet *packet,
				       const void *buffer, u32 length,
				       const struct kmcl_page_buffer *pb,
				       u32 count, u32 flags);
/**
 * kmcl_packet_send_with_transfer_pages() - sends data the sender wrote into
 * the other endpoint's transfer-page set (kmcl's extension; the
 * VM_PKT_DATA_USING_XFER_PAGES packet of Hyper-V's network VSP).
 * @packet:  as kmcl_packet_send().
 * @set_id:  a set the other endpoint registered with
 *           kmcl_channel_register_transfer_page_set().
 * @ranges:  the ranges of the set holding the data, copied into the ring.
 * @count:   entries in @ranges, 1 to 1024.
 * @buffer:  the in-band payload (a protocol header, say).
 * @length:  bytes in @buffer.
 * @flags:   0 or VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION (the routine
 *           then runs when the receiver completed the packet: its ranges
 *           are free to reuse).
 *
 * A server writes the data through its mapping of the client's GPADL
 * (kmcl_channel_map_gpadl()) first.  kmcl checks the ranges against the
 * receiver's registered set before it writes the packet, so a wrong range
 * is this call's -EINVAL rather than a failed channel on the other side.
 * Context: any.
 * Return: as kmcl_packet_send(); -EINVAL also when the other endpoint has
 * no set @set_id (a VMBus host: kmcl cannot tell, so sends to it are
 * refused), a range is empty or leaves the set, or @count is 0 or above
 * 1024.
 */
int kmcl_packet_send_with_transfer_pages(struct kmcl_packet *packet,
					 u16 set_id,
					 const struct kmcl_transfer_range *ranges,
					 u32 count, const void *buffer,
					 u32 length, u32 flags);

/**
 * kmcl_channel_send_synchronous_request() - VmbChannelSendSynchronousRequest.
 * @channel:      a connected channel.
 * @buffer:       the request payload.
 * @length:       bytes in @buffer.
 * @mdl:          external data, or NULL; its pages stay valid until this
 *                returns.
 * @flags:        VMBUS_CHANNEL_FORMAT_FLAG_* (a completion is always asked).
 * @reply:        receives the completion payload.
 * @reply_length: in: bytes in @reply; out: bytes of the reply.
 * @timeout_ms:   NULL waits for ever; 0 fails at once on a full ring.
 *
 * Completes from the channel's Opened and Started callbacks (before
 * packets are delivered), on a paused channel and at the transaction
 * quota: completions at the head of the incoming ring are read while
 * delivery is off (one behind an undelivered data packet waits for it).
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0, -ETIMEDOUT (cancelled; a late reply is dropped), -ENODEV
 * (not connected or the connection ended), -EOVERFLOW (@reply too small),
 * -ENOBUFS (the send queue is at its limit), -EINTR, -EINVAL (atomic
 * context, unknown flag).
 */
int kmcl_channel_send_synchronous_request(struct kmcl_channel *channel,
					  const void *buffer, u32 length,
					  const struct kmcl_mdl *mdl, u32 flags,
					  void *reply, u32 *reply_length,
					  const u32 *timeout_ms);

/**
 * kmcl_channel_create_gpadl_from_buffer() - VmbChannelCreateGpadlFromBuffer.
 * @channel: a connected client channel (from EvtVmbChannelOpened on).
 * @flags:   0 or VMBUS_CHANNEL_GPADL_FLAG_READ_ONLY.
 * @buffer:  vmalloc or linear-map (kmalloc, page allocator) memory.
 * @length:  bytes shared, at least 1.
 * @gpadl:   receives the handle the server maps.
 *
 * kmcl records the pages under @buffer without taking references (as
 * hv_vmbus does for its GPADLs): keep the memory until
 * kmcl_channel_delete_gpadl() returns.  On a VMBus host's channel a GPADL
 * is whole pages (hv_vmbus describes it from the first page's start, with
 * no offset): @buffer must start on a page boundary and @length be a
 * multiple of PAGE_SIZE, else -EINVAL (never a shifted or widened view).
 *
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0, -EINVAL (flags, NULL, zero length, memory kmcl cannot look
 * up, a server channel, a host channel's partial page), -ENOTCONN,
 * -ENOMEM.
 */
int kmcl_channel_create_gpadl_from_buffer(struct kmcl_channel *channel,
					  u32 flags, void *buffer, u32 length,
					  u32 *gpadl);
/**
 * kmcl_channel_create_gpadl_from_mdl() - VmbChannelCreateGpadlFromMdl.
 * @channel: a connected client channel.
 * @flags:   0 or VMBUS_CHANNEL_GPADL_FLAG_READ_ONLY.
 * @mdl:     the memory; its pages must stay allocated until the GPADL is
 *           deleted.
 * @offset:  first byte of @mdl's data shared.
 * @length:  bytes shared; 0: to the end of @mdl's data.
 * @gpadl:   receives the handle.
 *
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: as kmcl_channel_create_gpadl_from_buffer(); -EINVAL also when
 * @offset and @length leave @mdl.
 */
int kmcl_channel_create_gpadl_from_mdl(struct kmcl_channel *channel,
				       u32 flags, const struct kmcl_mdl *mdl,
				       u32 offset, u32 length, u32 *gpadl);
/**
 * kmcl_channel_delete_gpadl() - VmbChannelDeleteGpadl.
 * @channel: the client channel that created @gpadl.
 * @gpadl:   the handle.
 *
 * Waits while the server has the GPADL mapped.  Delete GPADLs in
 * EvtVmbChannelClosed at the latest; kmcl deletes what is left after it.
 *
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0, -ENOENT (unknown handle), -EBUSY (registered as a
 * transfer-page set), -EINVAL (a server channel).
 */
int kmcl_channel_delete_gpadl(struct kmcl_channel *channel, u32 gpadl);
/**
 * kmcl_channel_register_transfer_page_set() - makes a GPADL a transfer-page
 * set (kmcl's extension).
 * @channel: a connected client channel.
 * @gpadl:   a GPADL of @channel (kmcl_channel_create_gpadl_from_buffer()).
 * @set_id:  the id the other endpoint names the set by.
 *
 * From now on the other endpoint may deliver data into the GPADL's memory
 * and send packets naming ranges of it (Linux netvsc's receive buffer: the
 * driver tells the host the GPADL handle and the set id in its own
 * protocol, then registers the set here).  Packets naming an unknown set,
 * a range outside the set or over 1024 ranges close the channel.  The
 * set lasts until kmcl_channel_unregister_transfer_page_set() or the end
 * of the connection; kmcl_channel_delete_gpadl() refuses the GPADL
 * meanwhile.
 * Context: process, may sleep (-EINVAL from atomic context).
 * A client's sub-channels use their primary's sets (one receive buffer per
 * device, as netvsc shares it): register on the primary.
 * Return: 0, -ENOENT (unknown GPADL), -EEXIST (@set_id registered
 * already), -ENOSPC (64 sets registered), -ENOTCONN (not connected),
 * -EINVAL (a server channel, a sub-channel).
 */
int kmcl_channel_register_transfer_page_set(struct kmcl_channel *channel,
					    u32 gpadl, u16 set_id);
/**
 * kmcl_channel_unregister_transfer_page_set() - ends a transfer-page set.
 * @channel: the client channel that registered it.
 * @set_id:  the set.
 *
 * Packets delivered already keep their ranges (the memory is the
 * driver's until it deletes the GPADL); a packet naming the set from now
 * on closes the channel.
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0, -ENOENT (not registered), -EINVAL (a server channel).
 */
int kmcl_channel_unregister_transfer_page_set(struct kmcl_channel *channel,
					      u16 set_id);
/**
 * kmcl_channel_map_gpadl() - VmbChannelMapGpadl.
 * @channel: a connected server channel.
 * @flags:   VMBUS_CHANNEL_GPADL_FLAG_READ_ONLY for a read-only mapping;
 *           0 asks for write access, which a read-only GPADL refuses.
 * @gpadl:   the client's handle.
 * @mdl:     receives the client's pages, offset and length, valid until
 *           kmcl_channel_unmap_gpadl(); reach them with kmap_local_page()
 *           or vmap().
 *
 * One mapping per GPADL at a time.  Unmap in EvtVmbChannelClosed at the
 * latest; kmcl unmaps what is left after it.
 *
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0, -ENOENT, -EBUSY (mapped already), -EACCES, -ENOTCONN,
 * -EINVAL, -ENOMEM.
 */
int kmcl_channel_map_gpadl(struct kmcl_channel *channel, u32 flags,
			   u32 gpadl, struct kmcl_mdl **mdl);
/**
 * kmcl_channel_unmap_gpadl() - VmbChannelUnmapGpadl.
 * @channel: the server channel that mapped @gpadl.
 * @gpadl:   the handle.
 *
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0, -ENOENT (not mapped here).
 */
int kmcl_channel_unmap_gpadl(struct kmcl_channel *channel, u32 gpadl);

/*
 * Save and restore (server): replacing a VSP while its client stays
 * connected (a live update).  Documentation/save-restore.rst has the
 * sequence.
 */

/**
 * kmcl_channel_save_begin() - VmbChannelSaveBegin.
 * @channel: a connected server channel.
 *
 * Stops delivery and takes the packets the driver holds uncompleted into
 * the save, with what EvtVmbChannelSavePacket saves for each (asked first
 * with no buffer: return 0 for nothing to save, or an error with
 * *@needed set; then called again with a buffer of that size).  From then
 * on they belong to the save: completing one fails with -EINVAL.
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0, -EINVAL (client), -ENOTCONN, -EBUSY (a save under way or
 * done), -EOPNOTSUPP (a packet carries external data), the save
 * callback's error, -ENOMEM; on an error every packet is the driver's
 * again, as it was, and delivery resumes.
 */
int kmcl_channel_save_begin(struct kmcl_channel *channel);
/**
 * kmcl_channel_save_continue() - VmbChannelSaveContinue: whole chunks.
 * @channel:  a channel after kmcl_channel_save_begin().
 * @buffer:   receives chunks (NULL if @size is 0).
 * @size:     bytes at @buffer.
 * @filled:   receives the bytes written.
 * @required: receives, on -ENOBUFS, the size of the next chunk.
 *
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0 (all written), -EOVERFLOW (STATUS_BUFFER_OVERFLOW: some
 * written, more to come), -ENOBUFS (STATUS_BUFFER_TOO_SMALL: nothing
 * written), -EINVAL (no save under way, NULL output).
 */
int kmcl_channel_save_continue(struct kmcl_channel *channel, void *buffer,
			       u32 size, u32 *filled, u32 *required);
/**
 * kmcl_channel_save_end() - VmbChannelSaveEnd.
 * @channel: a channel after kmcl_channel_save_begin().
 *
 * The channel's Disable (or cleanup) now parks its connection: the client
 * is told nothing until a server restoring this save takes it over.
 * Context: process, may sleep (refused from atomic context and from the
 * channel's own state callbacks, with a line in the kernel log).
 */
void kmcl_channel_save_end(struct kmcl_channel *channel);
/**
 * kmcl_channel_restore_from_buffer() - VmbChannelRestoreFromBuffer.
 * @channel: a disabled server channel whose interface is set.
 * @buffer:  whole chunks of a save, in order.
 * @size:    bytes at @buffer.
 *
 * Each buffer is checked whole before any of it is used.  Once the save is
 * complete, the channel's Enable takes the parked connection over and,
 * after EvtChannelOpened, hands each saved packet to
 * EvtVmbChannelRestorePacket.
 * Context: process, may sleep (-EINVAL from atomic context); -EDEADLK
 * from the channel's own state callbacks.
 * Return: 0 (complete), -EAGAIN (STATUS_MORE_PROCESSING_REQUIRED), -EBADMSG
 * (not a valid save, or not its next chunks), -EINVAL (a save of another
 * interface, client channel, NULL), -EBUSY (enabled), -ENOMEM.
 */
int kmcl_channel_restore_from_buffer(struct kmcl_channel *channel,
				     const void *buffer, u32 size);
/**
 * kmcl_packet_restore() - VmbPacketRestore.
 * @packet: a packet object of the restored channel.
 * @buffer: the lib_buffer of EvtVmbChannelRestorePacket.
 * @size:   its size.
 *
 * Makes the saved packet an incoming packet again;
 * kmcl_packet_restored() hands out its handle.
 * Context: process.
 * Return: 0, -EINVAL, -EBADMSG (not a saved packet), -EBUSY (@packet holds
 * a restored packet not handed out yet), -ENOMEM.
 */
int kmcl_packet_restore(struct kmcl_packet *packet, const void *buffer,
			u32 size);
/**
 * kmcl_packet_restored() - the incoming packet kmcl_packet_restore() made
 * (kmcl's own: KMCL's packet objects are their own completion handles).
 * @packet: the packet object.
 *
 * Complete (or fail) it as any incoming packet; @packet may be freed.
 * Context: any.
 * Return: the handle (once), or NULL.
 */
struct kmcl_incoming *kmcl_packet_restored(struct kmcl_packet *packet);
/**
 * kmcl_stash_put() - keep a copy of @len bytes under @key (kmcl's own).
 * @key:    the key (e.g. the VSP's interface instance).
 * @buffer: the bytes.
 * @len:    how many (> 0).
 *
 * Replaces what was kept under @key.  Kept until kmcl_stash_take() or
 * kmcl unloads: state a driver hands to its next load (a live update).
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0, -EINVAL, -ENOMEM.
 */
int kmcl_stash_put(const guid_t *key, const void *buffer, u32 len);
/**
 * kmcl_stash_take() - take back what kmcl_stash_put() kept (kmcl's own).
 * @key:    the key.
 * @buffer: receives the bytes (NULL if @size is 0).
 * @size:   bytes at @buffer.
 * @len:    receives the size kept.
 *
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0 (copied and forgotten), -ENOENT (nothing kept), -ENOBUFS
 * (@size too small; still kept), -EINVAL.
 */
int kmcl_stash_take(const guid_t *key, void *buffer, u32 size, u32 *len);
/**
 * kmcl_convert_vmbus_handle_to_kernel_handle() - VmbConvertVmbusHandleToKernelHandle.
 * @handle:        a loopback bus handle from kmcl_loopback_vmbus_create().
 * @kernel_handle: receives the handle kmcl_server_channel_init_set_vmbus_handle()
 *                 takes; valid until the bus is destroyed.
 *
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0, -EINVAL (NULL @kernel_handle), -ENOENT (unknown @handle).
 */
int kmcl_convert_vmbus_handle_to_kernel_handle(u64 handle, void **kernel_handle);

/**
 * kmcl_loopback_vmbus_create() - a new loopback VMBus, independent of
 * kmcl's own (kmcl's own; KMCL's VMBus handles name a VM's bus): offers on
 * it are seen only by clients on it.  It has no VMBus host.
 * @handle: receives its handle.
 *
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0, -EINVAL (NULL @handle), -ENOMEM.
 */
int kmcl_loopback_vmbus_create(u64 *handle);

/**
 * kmcl_loopback_vmbus_destroy() - forgets a bus from
 * kmcl_loopback_vmbus_create(); channels on it keep it until cleaned up.
 * @handle: its handle.
 *
 * Context: process, may sleep (-EINVAL from atomic context).
 * Return: 0, -ENOENT (unknown @handle).
 */
int kmcl_loopback_vmbus_destroy(u64 handle);

/* Interface tables (KMCL_CLIENT_INTERFACE_V1, KMCL_SERVER_ONLY_METHODS). */

#define KMCL_CLIENT_INTERFACE	1
#define KMCL_SERVER_INTERFACE	2
#define KMCL_INTERFACE_VERSION_1 1
#define KMCL_INTERFACE_VERSION_2 2

/*
 * struct kmcl_client_interface_v1 - KMCL_CLIENT_INTERFACE_V1: every client
 * function, in KMCL's order; each member points to the kmcl_ function of
 * its name.  @size is the size of the table asked for (this one or the
 * server table), @version KMCL_INTERFACE_VERSION_1.
 */
struct kmcl_client_interface_v1 {
	u32 size;
	u32 version;
	typeof(kmcl_channel_allocate) *channel_allocate;
	typeof(kmcl_channel_cleanup) *channel_cleanup;
	typeof(kmcl_channel_create_gpadl_from_buffer) *channel_create_gpadl_from_buffer;
	typeof(kmcl_channel_create_gpadl_from_mdl) *channel_create_gpadl_from_mdl;
	typeof(kmcl_channel_delete_gpadl) *channel_delete_gpadl;
	typeof(kmcl_channel_disable) *channel_disable;
	typeof(kmcl_channel_enable) *channel_enable;
	typeof(kmcl_channel_get_interface_instance) *channel_get_interface_instance;
	typeof(kmcl_channel_get_mmio_space) *channel_get_mmio_space;
	typeof(kmcl_channel_get_pointer) *channel_get_pointer;
	typeof(kmcl_channel_init_set_client_context_size) *channel_init_set_client_context_size;
	typeof(kmcl_channel_init_set_flags) *channel_init_set_flags;
	typeof(kmcl_channel_init_set_friendly_name) *channel_init_set_friendly_name;
	typeof(kmcl_channel_init_set_maximum_external_data) *channel_init_set_maximum_external_data;
	typeof(kmcl_channel_init_set_maximum_packet_size) *channel_init_set_maximum_packet_size;

	typeof(kmcl_channel_init_set_process_packet_callbacks)
		*channel_init_set_process_packet_callbacks;

	typeof(kmcl_channel_init_set_state_change_callbacks)
		*channel_init_set_state_change_callbacks;
	typeof(kmcl_channel_packet_complete) *channel_packet_complete;
	typeof(kmcl_channel_packet_defer_to_passive) *channel_packet_defer_to_passive;
	typeof(kmcl_channel_packet_fail) *channel_packet_fail;
	typeof(kmcl_channel_packet_get_external_data) *channel_packet_get_external_data;
	typeof(kmcl_channel_pause) *channel_pause;
	typeof(kmcl_channel_send_synchronous_request) *channel_send_synchronous_request;

	typeof(kmcl_channel_set_incoming_processing_at_passive)
		*channel_set_incoming_processing_at_passive;

	typeof(kmcl_channel_set_interrupt_latency) *channel_set_interrupt_latency;
	typeof(kmcl_channel_set_pointer) *channel_set_pointer;
	typeof(kmcl_channel_set_transaction_quota) *channel_set_transaction_quota;
	typeof(kmcl_channel_sizeof_packet) *channel_sizeof_packet;
	typeof(kmcl_channel_start) *channel_start;

	typeof(kmcl_client_channel_init_set_ring_buffer_page_count)
		*client_channel_init_set_ring_buffer_page_count;

	typeof(kmcl_client_channel_init_set_target_pnp) *client_channel_init_set_target_pnp;
	typeof(kmcl_packet_allocate) *packet_allocate;
	typeof(kmcl_packet_free) *packet_free;
	typeof(kmcl_packet_get_channel) *packet_get_channel;
	typeof(kmcl_packet_get_pointer) *packet_get_pointer;
	typeof(kmcl_packet_initialize) *packet_initialize;
	typeof(kmcl_packet_send) *packet_send;
	typeof(kmcl_packet_send_with_external_mdl) *packet_send_with_external_mdl;
	typeof(kmcl_packet_send_with_external_pfns) *packet_send_with_external_pfns;
	typeof(kmcl_packet_set_completion_routine) *packet_set_completion_routine;
	typeof(kmcl_packet_set_pointer) *packet_set_pointer;
};

/*
 * struct kmcl_server_only_methods - KMCL_SERVER_ONLY_METHODS, in KMCL's
 * order; each member points to the kmcl_ function of its name.
 */
struct kmcl_server_only_methods {
	typeof(kmcl_channel_map_gpadl) *channel_map_gpadl;
	typeof(kmcl_channel_restore_from_buffer) *channel_restore_from_buffer;
	typeof(kmcl_channel_save_begin) *channel_save_begin;
	typeof(kmcl_channel_save_continue) *channel_save_continue;
	typeof(kmcl_channel_save_end) *channel_save_end;
	typeof(kmcl_channel_unmap_gpadl) *channel_unmap_gpadl;
	typeof(kmcl_convert_vmbus_handle_to_kernel_handle) *convert_vmbus_handle_to_kernel_handle;
	typeof(kmcl_packet_restore) *packet_restore;
	typeof(kmcl_server_channel_init_set_flags) *server_channel_init_set_flags;
	typeof(kmcl_server_channel_init_set_mmio_megabytes) *server_channel_init_set_mmio_megabytes;

	typeof(kmcl_server_channel_init_set_save_restore_packet_callbacks)
		*server_channel_init_set_save_restore_packet_callbacks;

	typeof(kmcl_server_channel_init_set_target_interface_id)
		*server_channel_init_set_target_interface_id;
	typeof(kmcl_server_channel_init_set_target_vtl) *server_channel_init_set_target_vtl;
	typeof(kmcl_server_channel_init_set_vmbus_handle) *server_channel_init_set_vmbus_handle;
};

/**
 * struct kmcl_server_interface_v1 - the server interface: the client
 * table, then the server-only methods.
 * @client: every client function.
 * @server: the server-only functions.
 */
struct kmcl_server_interface_v1 {
	struct kmcl_client_interface_v1 client;
	struct kmcl_server_only_methods server;
};

/*
 * struct kmcl_v2_methods - what version 2 of kmcl's tables adds to version
 * 1: functions of KMCL's later interface versions (V2's
 * VmbChannelPacketGetClientContext; V5's
 * VmbClientChannelInitSetTargetProcessorIndex and
 * VmbChannelInitSetPrimaryChannel), then kmcl's own; each member points to
 * the kmcl_ function of its name.
 */
struct kmcl_v2_methods {
	typeof(kmcl_channel_packet_get_client_context) *channel_packet_get_client_context;
	typeof(kmcl_channel_init_set_target_processor) *channel_init_set_target_processor;
	typeof(kmcl_channel_init_set_primary_channel) *channel_init_set_primary_channel;
	typeof(kmcl_client_channel_init_set_transport) *client_channel_init_set_transport;

	typeof(kmcl_channel_init_set_subchannel_callback)
		*channel_init_set_subchannel_callback;
	typeof(kmcl_channel_get_subchannel_index) *channel_get_subchannel_index;

	typeof(kmcl_channel_register_transfer_page_set)
		*channel_register_transfer_page_set;

	typeof(kmcl_channel_unregister_transfer_page_set)
		*channel_unregister_transfer_page_set;

	typeof(kmcl_channel_packet_get_transfer_pages)
		*channel_packet_get_transfer_pages;
	typeof(kmcl_packet_send_with_page_buffers) *packet_send_with_page_buffers;
	typeof(kmcl_packet_send_with_transfer_pages) *packet_send_with_transfer_pages;
	typeof(kmcl_stash_put) *stash_put;
	typeof(kmcl_stash_take) *stash_take;
	typeof(kmcl_loopback_vmbus_create) *loopback_vmbus_create;
	typeof(kmcl_loopback_vmbus_destroy) *loopback_vmbus_destroy;
	typeof(kmcl_channel_get_mmio_physical) *channel_get_mmio_physical;
};

/**
 * struct kmcl_client_interface_v2 - the client table, version 2: version
 * 1's table unchanged as its prefix (@v1.size is this table's size,
 * @v1.version KMCL_INTERFACE_VERSION_2), then the additions.
 * @v1: every KMCL V1 client function.
 * @v2: the functions version 2 adds.
 */
struct kmcl_client_interface_v2 {
	struct kmcl_client_interface_v1 v1;
	struct kmcl_v2_methods v2;
};

/**
 * struct kmcl_server_interface_v2 - the server table, version 2: version
 * 1's server table unchanged as its prefix, then the additions.
 * @v1:             the V1 server table (client and server-only functions).
 * @v2:             the functions version 2 adds.
 * @packet_restored: kmcl_packet_restored() (server only).
 */
struct kmcl_server_interface_v2 {
	struct kmcl_server_interface_v1 v1;
	struct kmcl_v2_methods v2;
	typeof(kmcl_packet_restored) *packet_restored;
};

/**
 * kmcl_query_interface() - fill an interface table (KMCL's
 * WdfFdoQueryForInterface of KMCL_CLIENT_INTERFACE_TYPE/_SERVER_).
 * @kind:      KMCL_CLIENT_INTERFACE or KMCL_SERVER_INTERFACE.
 * @size:      sizeof the caller's table.
 * @version:   KMCL_INTERFACE_VERSION_1 or KMCL_INTERFACE_VERSION_2.
 * @interface: the caller's struct kmcl_client_interface_v1 or
 *             struct kmcl_server_interface_v1 (version 1), or
 *             struct kmcl_client_interface_v2 or
 *             struct kmcl_server_interface_v2 (version 2).
 *
 * Context: any.
 * Return: 0, -EINVAL (unknown @kind, NULL, or @size not the table's size
 * for @version), -EOPNOTSUPP (unknown @version).  The log says which.
 */
int kmcl_query_interface(u32 kind, u32 size, u32 version, void *interface);

#endif /* _KMCL_KMCL_H */
