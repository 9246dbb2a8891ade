// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl_stor_vsp: the server (VSP) of kmcl's storage-style sample pair; the
 * client is kmcl_stor_vsc.  See kmcl_stor.h for the protocol.
 *
 * It keeps a RAM disk and offers the interface; when the client's
 * STOR_MSG_INIT arrives it makes the sub-channels asked for.  A write's
 * data (the packet's MDL chain) is checked byte for byte against what the
 * client writes and copied to the disk; a read is copied from the disk
 * into the chain's pages.  Each request is completed with its status and
 * byte count.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/highmem.h>
#include <linux/module.h>
#include <linux/vmalloc.h>

#include <kmcl/kmcl.h>

#include "kmcl_stor.h"

static struct kmcl_channel *primary;
static struct kmcl_channel *subs[STOR_MAX_CHANNELS];
static atomic_t per_channel[STOR_MAX_CHANNELS];
static unsigned int nch = 1;
static u8 *disk;
static u32 requests;
static atomic_t served, writes_good, writes_bad, reads, failed;

/* Walks the chain @m over @len bytes of disk from @at: copies the data to
 * the disk, checking it (@write), or from the disk.  Returns whether every
 * byte written was the client's pattern.
 */
static bool transfer(const struct kmcl_mdl *m, u32 at, u32 len, bool write)
{
	bool same = true;

	for (; m && len; m = m->next) {
		u32 off = 0;

		while (off < m->length && len) {
			u32 pos = m->offset + off;
			u32 in_page = offset_in_page(pos);
			u32 n = min3(m->length - off, len, (u32)PAGE_SIZE - in_page);
			u8 *p = kmap_local_page(m->pages[pos >> PAGE_SHIFT]);
			u32 k;

			if (write) {
				for (k = 0; k < n; k++) {
					u32 b = at + k;

					same &= p[in_page + k] ==
						stor_byte(b / STOR_SECTOR, b % STOR_SECTOR);
				}
				memcpy(disk + at, p + in_page, n);
			} else {
				memcpy(p + in_page, disk + at, n);
			}
			kunmap_local(p);
			off += n;
			at += n;
			len -= n;
		}
	}
	return same;
}

static u32 chain_len(const struct kmcl_mdl *m)
{
	u32 n = 0;

	for (; m; m = m->next)
		n += m->length;
	return n;
}

static void make_subchannels(u32 want);

static void vsp_packet(struct kmcl_channel *ch, struct kmcl_incoming *packet,
		       const void *buffer, u32 length, u32 flags)
{
	const struct stor_request *r = buffer;
	struct stor_status st = { .status = -EINVAL };
	uintptr_t index = (uintptr_t)kmcl_channel_get_pointer(ch);
	struct kmcl_mdl *m = NULL;
	u32 bytes;

	if (length >= sizeof(struct stor_init) &&
	    ((const struct stor_init *)buffer)->type == STOR_MSG_INIT && ch == primary) {
		const struct stor_init *init = buffer;

		requests = init->requests;
		st.status = 0;
		kmcl_channel_packet_complete(packet, &st, sizeof(st));
		make_subchannels(init->channels);
		return;
	}
	if (length < sizeof(*r) || (r->type != STOR_MSG_WRITE && r->type != STOR_MSG_READ)) {
		kmcl_channel_packet_fail(packet);
		return;
	}
	bytes = r->sectors * STOR_SECTOR;
	if (r->sectors && r->sectors <= STOR_MAX_SECTORS && r->lba < STOR_DISK_SECTORS &&
	    r->sectors <= STOR_DISK_SECTORS - r->lba &&
	    !kmcl_channel_packet_get_external_data(packet, 0, &m) && chain_len(m) == bytes) {
		bool ok = transfer(m, r->lba * STOR_SECTOR, bytes, r->type == STOR_MSG_WRITE);

		st.status = 0;
		st.bytes = bytes;
		if (r->type == STOR_MSG_WRITE)
			atomic_inc(ok ? &writes_good : &writes_bad);
		else
			atomic_inc(&reads);
	} else {
		atomic_inc(&failed);
	}
	kmcl_channel_packet_complete(packet, &st, sizeof(st));
	atomic_inc(&per_channel[index]);
	if (atomic_inc_return(&served) == requests) {
		unsigned int c;

		pr_info("%u requests served: %d writes byte-exact, %d bad, %d reads, %d failed\n",
			requests, atomic_read(&writes_good), atomic_read(&writes_bad),
			atomic_read(&reads), atomic_read(&failed));
		for (c = 0; c < nch; c++)
			pr_info("channel %u: %d requests\n", c, atomic_read(&per_channel[c]));
	}
}

static struct kmcl_channel *new_channel(unsigned int index)
{
	struct kmcl_channel *ch;

	if (kmcl_channel_allocate(THIS_MODULE, true, &ch))
		return NULL;
	kmcl_channel_set_pointer(ch, (void *)(uintptr_t)index);
	atomic_set(&per_channel[index], 0);
	if ((index && (kmcl_channel_init_set_primary_channel(ch, primary) ||
		       kmcl_channel_init_set_friendly_name(ch, "kmcl_stor_vsp_sub"))) ||
	    kmcl_channel_init_set_process_packet_callbacks(ch, vsp_packet, NULL) ||
	    kmcl_channel_init_set_maximum_external_data(ch, STOR_MAX_SECTORS * STOR_SECTOR,
							STOR_PIECES)) {
		kmcl_channel_cleanup(ch);
		return NULL;
	}
	return ch;
}

static void make_subchannels(u32 want)
{
	unsigned int i;

	want = clamp_t(u32, want, 1, STOR_MAX_CHANNELS);
	atomic_set(&served, 0);
	nch = want;
	for (i = 1; i < want; i++) {
		subs[i] = new_channel(i);
		if (!subs[i] || kmcl_channel_enable(subs[i]) || kmcl_channel_start(subs[i])) {
			pr_err("sub-channel %u not offered\n", i);
			if (subs[i])
				kmcl_channel_cleanup(subs[i]);
			subs[i] = NULL;
			nch = i;
			break;
		}
	}
}

static void vsp_closed(struct kmcl_channel *ch)
{
	unsigned int i;

	for (i = 1; i < STOR_MAX_CHANNELS; i++) {
		if (subs[i])
			kmcl_channel_cleanup(subs[i]);
		subs[i] = NULL;
	}
	pr_info("client disconnected\n");
}

static const struct kmcl_state_callbacks primary_callbacks = {
	.version = KMCL_STATE_CALLBACKS_VERSION,
	.size = sizeof(struct kmcl_state_callbacks),
	.closed = vsp_closed,
};

static int __init vsp_init(void)
{
	int rc;

	disk = vzalloc(STOR_DISK_SECTORS * STOR_SECTOR);
	if (!disk)
		return -ENOMEM;
	primary = new_channel(0);
	if (!primary) {
		vfree(disk);
		return -ENOMEM;
	}
	rc = kmcl_server_channel_init_set_target_interface_id(primary, &stor_type, &stor_instance);
	if (!rc)
		rc = kmcl_channel_init_set_friendly_name(primary, "kmcl_stor_vsp");
	if (!rc)
		rc = kmcl_channel_init_set_state_change_callbacks(primary, &primary_callbacks);
	if (!rc)
		rc = kmcl_channel_set_incoming_processing_at_passive(primary, true);
	if (!rc)
		rc = kmcl_channel_enable(primary);
	if (!rc)
		rc = kmcl_channel_start(primary);
	if (rc) {
		kmcl_channel_cleanup(primary);
		vfree(disk);
		return rc;
	}
	pr_info("storage-style interface offered (a %u KiB RAM disk)\n",
		STOR_DISK_SECTORS * STOR_SECTOR / 1024);
	return 0;
}

static void __exit vsp_exit(void)
{
	kmcl_channel_disable(primary);
	kmcl_channel_cleanup(primary);
	vfree(disk);
	pr_info("storage-style interface withdrawn\n");
}

module_init(vsp_init);
module_exit(vsp_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmcl sample: a storage-style VSP (MDL chains, sub-channels)");
MODULE_IMPORT_NS("KMCL");
