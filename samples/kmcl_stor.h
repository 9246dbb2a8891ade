/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The storage-style sample pair (kmcl_stor_vsp, kmcl_stor_vsc): its
 * interface, its in-band protocol and the bytes of its disk.
 *
 * The server (VSP) keeps a 4 MiB RAM disk.  The client (VSC) asks for
 * sub-channels and spreads read and write requests over all channels,
 * each request's data described by an MDL chain of scattered pieces of
 * pages (multi-range external data), as a storage VSC describes an I/O's
 * scatter-gather list; every request is completed with a status.  The
 * client first writes the whole disk, then reads it back at random.
 */
#ifndef KMCL_STOR_H
#define KMCL_STOR_H

#include <linux/types.h>
#include <linux/uuid.h>

static const guid_t stor_type =
	GUID_INIT(0x6b6d636c, 0x7374, 0x6f72, 0x8a, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01);
static const guid_t stor_instance =
	GUID_INIT(0x6b6d636c, 0x7374, 0x6f72, 0x8a, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02);

#define STOR_SECTOR		512
#define STOR_DISK_SECTORS	8192	/* 4 MiB */
#define STOR_MAX_SECTORS	32	/* per request: 16 KiB */
#define STOR_MAX_CHANNELS	8
#define STOR_SLOTS		16	/* requests in flight per channel */
#define STOR_PIECES		4	/* MDLs per request, at most */
#define STOR_PIECE_PAGES	6	/* pages one piece may touch */
#define STOR_SLOT_PAGES		12	/* a request's memory */
#define STOR_WAIT		VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION

enum stor_msg {
	STOR_MSG_INIT = 1,	/* client: channels wanted, requests coming */
	STOR_MSG_WRITE = 2,
	STOR_MSG_READ = 3,
};

/* STOR_MSG_INIT, a synchronous request on the primary channel. */
struct stor_init {
	u32 type;
	u32 channels;
	u32 requests;
};

/* A request; its data is the packet's external data (an MDL chain). */
struct stor_request {
	u32 type;
	u32 tag;
	u32 lba;
	u32 sectors;
};

/* A request's completion. */
struct stor_status {
	s32 status;
	u32 bytes;
};

/* Byte @i of sector @lba as the client wrote it. */
static inline u8 stor_byte(u32 lba, u32 i)
{
	return (u8)(lba * 7 + i * 3 + (i >> 8) + 0x5a);
}

/* Request @tag's size in sectors, 1 to STOR_MAX_SECTORS. */
static inline u32 stor_sectors(u32 tag)
{
	u32 x = (tag * 0x9e3779b9u) | 1;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x % STOR_MAX_SECTORS + 1;
}

#endif /* KMCL_STOR_H */
