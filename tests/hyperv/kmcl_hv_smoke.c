// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl_hv_smoke: opens a real VMBus channel through kmcl and speaks its
 * protocol, for tests/kselftest/kmcl/hyperv.sh on a machine with a VMBus host
 * (Hyper-V, Azure, or QEMU/KVM with VMBus).
 *
 * The channel is Hyper-V's heartbeat integration service, which every
 * Hyper-V host offers: kmcl client channel with KMCL_TRANSPORT_HOST,
 * TargetPnp(heartbeat type, any instance).  The host starts with an IC
 * version negotiation, answered with hv_vmbus's own
 * vmbus_prep_negotiate_resp() and the versions Linux's hv_utils offers;
 * then it sends heartbeats, each answered with its sequence number plus
 * one, as hv_utils does.  Loading succeeds once the negotiation and one
 * heartbeat were answered (within @timeout seconds); the log says what was
 * negotiated.  The device must not be bound to hv_utils (hyperv.sh unbinds
 * it first).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/completion.h>
#include <linux/hyperv.h>
#include <linux/module.h>
#include <linux/spinlock.h>

#include <kmcl/kmcl.h>

MODULE_IMPORT_NS("KMCL");

static unsigned int timeout = 30;
module_param(timeout, uint, 0444);
MODULE_PARM_DESC(timeout, "Seconds to wait for the host's negotiation and first heartbeat");

/* Hyper-V's heartbeat service: 57164f39-9115-4e78-ab55-382f3bd5422d. */
static const guid_t heartbeat_type =
	GUID_INIT(0x57164f39, 0x9115, 0x4e78, 0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d);

/* The versions hv_utils offers (drivers/hv/hv_util.c). */
static const int fw_versions[] = { UTIL_FW_VERSION, UTIL_WS2K8_FW_VERSION };
static const int hb_versions[] = { 3 << 16, 1 << 16 };

#define MSG_MAX 256

static struct kmcl_channel *channel;
static DECLARE_COMPLETION(negotiated);
static DECLARE_COMPLETION(beat);
static DECLARE_COMPLETION(failed);
static int pnp_status;
static int nego_fw, nego_hb;
static u64 last_seq;
static DEFINE_SPINLOCK(msg_lock);
static u8 msg[MSG_MAX];

/* Responses are written at once; the packet object is then free. */
static void response_written(struct kmcl_packet *pkt, int status,
			     const void *buf, u32 len)
{
	kmcl_packet_free(pkt);
}

/* Connections opened so far; a heartbeat on a later one is logged once. */
static unsigned int opens;
static bool reopened;

static void reply(const u8 *buf, u32 len)
{
	struct kmcl_packet *pkt = kmcl_packet_allocate(channel);
	int rc;

	if (!pkt) {
		pr_err("no memory for a response\n");
		return;
	}
	kmcl_packet_set_completion_routine(pkt, response_written);
	rc = kmcl_packet_send(pkt, buf, len, NULL, 0);
	if (rc) {
		pr_err("response not sent: %d\n", rc);
		kmcl_packet_free(pkt);
	}
}

/* EvtVmbChannelProcessPacket (softirq): one IC message from the host. */
static void hb_process_packet(struct kmcl_channel *ch, struct kmcl_incoming *packet,
			      const void *buffer, u32 length, u32 flags)
{
	struct icmsg_hdr *hdr;
	struct heartbeat_msg_data *hb;
	bool nego = false, heartbeat = false;

	spin_lock(&msg_lock);
	if (length < ICMSG_HDR || length > MSG_MAX) {
		pr_err("IC message of %u bytes ignored\n", length);
		goto out;
	}
	memcpy(msg, buffer, length);
	hdr = (struct icmsg_hdr *)&msg[sizeof(struct vmbuspipe_hdr)];
	if (hdr->icmsgtype == ICMSGTYPE_NEGOTIATE) {
		nego = vmbus_prep_negotiate_resp(hdr, msg, length, fw_versions,
						 ARRAY_SIZE(fw_versions), hb_versions,
						 ARRAY_SIZE(hb_versions), &nego_fw, &nego_hb);
	} else if (hdr->icmsgtype == ICMSGTYPE_HEARTBEAT) {
		if (length < ICMSG_HDR + sizeof(hb->seq_num)) {
			pr_err("short heartbeat of %u bytes ignored\n", length);
			goto out;
		}
		hb = (struct heartbeat_msg_data *)&msg[ICMSG_HDR];
		last_seq = hb->seq_num;
		hb->seq_num += 1;
		heartbeat = true;
		/*
		 * The first heartbeat of a later connection (a resumed
		 * channel: KMCL_SMOKE_PM_TEST in hyperv.sh).
		 */
		if (READ_ONCE(reopened)) {
			WRITE_ONCE(reopened, false);
			pr_info("answered heartbeat %llu after reopening\n", last_seq);
		}
	} else {
		pr_warn("IC message type %u not handled\n", hdr->icmsgtype);
	}
	hdr->icflags = ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_RESPONSE;
	reply(msg, length);
out:
	spin_unlock(&msg_lock);
	kmcl_channel_packet_complete(packet, NULL, 0);
	if (nego)
		complete(&negotiated);
	if (heartbeat)
		complete(&beat);
}

static void hb_pnp_failure(struct kmcl_channel *ch, int status)
{
	pnp_status = status;
	complete(&failed);
}

static int hb_opened(struct kmcl_channel *ch)
{
	pr_info("heartbeat channel opened through kmcl\n");
	if (opens++)
		WRITE_ONCE(reopened, true);
	return 0;
}

/* Waits for @what, a PnpFailure or the timeout. */
static int wait_for(struct completion *what, const char *name)
{
	unsigned long end = jiffies + timeout * HZ;

	while (time_before(jiffies, end)) {
		if (wait_for_completion_timeout(what, HZ / 10))
			return 0;
		if (completion_done(&failed)) {
			pr_err("PnpFailure %d waiting for %s\n", pnp_status, name);
			return pnp_status ? pnp_status : -ENODEV;
		}
	}
	pr_err("no %s from the host in %u s\n", name, timeout);
	return -ETIMEDOUT;
}

static int __init hb_init(void)
{
	struct kmcl_state_callbacks cb;
	int rc;

	rc = kmcl_channel_allocate(THIS_MODULE, false, &channel);
	if (rc)
		return rc;
	kmcl_state_callbacks_init(&cb);
	cb.opened = hb_opened;
	rc = kmcl_client_channel_init_set_target_pnp(channel, &heartbeat_type, NULL,
						     hb_pnp_failure);
	if (!rc)
		rc = kmcl_client_channel_init_set_transport(channel, KMCL_TRANSPORT_HOST);
	if (!rc)
		rc = kmcl_client_channel_init_set_ring_buffer_page_count(channel, 3, 3);
	if (!rc)
		rc = kmcl_channel_init_set_state_change_callbacks(channel, &cb);
	if (!rc)
		rc = kmcl_channel_init_set_process_packet_callbacks(channel,
								    hb_process_packet,
								    NULL);
	if (!rc)
		rc = kmcl_channel_enable(channel);
	if (!rc)
		rc = wait_for(&negotiated, "version negotiation");
	if (!rc) {
		pr_info("negotiated IC framework %d.%d, heartbeat %d.%d\n",
			nego_fw >> 16, nego_fw & 0xffff, nego_hb >> 16, nego_hb & 0xffff);
		rc = wait_for(&beat, "heartbeat");
	}
	if (rc) {
		kmcl_channel_cleanup(channel);
		return rc;
	}
	pr_info("answered heartbeat %llu\n", last_seq);
	return 0;
}

static void __exit hb_exit(void)
{
	kmcl_channel_disable(channel);
	kmcl_channel_cleanup(channel);
}

module_init(hb_init);
module_exit(hb_exit);
MODULE_DESCRIPTION("kmcl smoke test on a real VMBus host: Hyper-V heartbeat");
MODULE_LICENSE("GPL");
