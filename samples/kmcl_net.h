/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The network-style sample pair (kmcl_net_vsp, kmcl_net_vsc): its
 * interface, its in-band protocol and the bytes of its frames.
 *
 * The client (VSC) shares a receive buffer and a send buffer as GPADLs,
 * registers the receive buffer as a transfer-page set and asks for
 * sub-channels; the server (VSP) then delivers frames into the receive
 * buffer as transfer-page packets, spread over the primary channel and
 * the sub-channels, and the client sends frames with multi-range external
 * data (page buffers), small ones through sections of the send buffer --
 * the shape of Linux's netvsc and Hyper-V's network VSP.
 */
#ifndef KMCL_NET_H
#define KMCL_NET_H

#include <linux/types.h>
#include <linux/uuid.h>

static const guid_t net_type =
	GUID_INIT(0x6b6d636c, 0x6e65, 0x7400, 0x8a, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01);
static const guid_t net_instance =
	GUID_INIT(0x6b6d636c, 0x6e65, 0x7400, 0x8a, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02);

#define NET_SET_ID		0xcafe	/* the receive buffer's transfer-page set */
#define NET_MAX_CHANNELS	8	/* primary and sub-channels */
#define NET_SLOTS		32	/* frames in flight per channel, each way */
#define NET_SLOT_SIZE		4096	/* receive-buffer bytes per frame */
#define NET_SECTION_SIZE	256	/* send-buffer bytes per small frame */
#define NET_SPLIT		1514	/* a frame's first range (server to client) */
#define NET_MAX_FRAME		9000	/* client to server */
#define NET_FRAME_PAGES		4	/* page buffers of a client frame, at most */

/* Receive buffer: one slot per channel and frame in flight. */
#define NET_RECV_LEN(ch)	((ch) * NET_SLOTS * NET_SLOT_SIZE)
/* Send buffer: one section per channel and frame in flight. */
#define NET_SEND_LEN(ch)	((ch) * NET_SLOTS * NET_SECTION_SIZE)

#define NET_WAIT	VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION

enum net_msg {
	NET_MSG_INIT = 1,	/* client: the buffers; server: makes sub-channels */
	NET_MSG_FRAME = 2,	/* a frame in external data or transfer pages */
	NET_MSG_SECTION = 3,	/* a small frame in a send-buffer section */
};

/* NET_MSG_INIT, a synchronous request on the primary channel. */
struct net_init {
	u32 type;
	u32 channels;		/* primary + sub-channels wanted */
	u32 frames;		/* frames the server sends */
	u32 recv_gpadl;
	u32 send_gpadl;
	u16 set_id;
	u16 reserved;
};

/* The in-band part of every frame packet. */
struct net_frame {
	u32 type;
	u32 seq;
	u32 len;
	u32 section;		/* NET_MSG_SECTION: the send-buffer section */
};

/* Byte @i of frame @seq. */
static inline u8 net_byte(u32 seq, u32 i)
{
	return (u8)(seq * 131 + i * 7 + (i >> 8));
}

/* Frame @seq's length, 1 to @max. */
static inline u32 net_frame_len(u32 seq, u32 max)
{
	u32 x = (seq * 0x9e3779b9u) | 1;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x % max + 1;
}

#endif /* KMCL_NET_H */
