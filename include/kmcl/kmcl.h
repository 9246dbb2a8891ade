/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kmcl: the VMBus Kernel Mode Client Library for Linux - public C header.
 *
 * Constants of the KMCL API (vmbuskernelmodeclientlibapi.h) with their
 * Windows names and values, so drivers ported from Windows keep their flag
 * arguments.  kmcl's functions return 0 or a negative errno; see
 * Documentation/status.rst for the errno each KMCL NTSTATUS maps to.
 *
 * The channel and packet functions are declared here as they are exported
 * (see Documentation/index.rst for what exists today).
 */
#ifndef _KMCL_KMCL_H
#define _KMCL_KMCL_H

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

/* VmbChannelPacketGetExternalData(): Flags. */
#define VMBUS_CHANNEL_PACKET_EXTERNAL_DATA_FLAG_READ_ONLY	0x1

/* Largest "extra data" of an offer (Linux: MAX_USER_DEFINED_BYTES). */
#define VMBUS_SERVER_CHANNEL_INIT_MAXIMUM_OFFER_DATA		120

#endif /* _KMCL_KMCL_H */
