/*
 * hv.h - the hypervisor transport: event channels and grants.
 *
 * Two implementations behind one small vtable:
 *   hv_xen.c  real Xen, through libxenevtchn and libxengnttab (grant copy
 *             preferred, as QEMU's xen-block does; batched map/unmap for the
 *             ring pages and persistent grants)
 *   hv_sim.c  the simulated hypervisor of `vbdfs --sim DIR` (blkback/sim/)
 *
 * xenstore is NOT behind this interface: both modes use the real
 * libxenstore client (in sim mode it talks to DIR/xenstored through
 * XENSTORED_PATH).
 *
 * The guest controls every grant reference and port number passed in here:
 * implementations check them and fail the call, never the process.
 * Each bound event channel has its own pollable fd, so one thread per ring
 * can wait on its own channel.
 */
#ifndef VBDFS_HV_H
#define VBDFS_HV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint32_t hv_gref_t;

#define HV_PAGE_SIZE 4096u

struct hv;
struct hv_evtchn;

/* One piece of a grant copy: len bytes between a local buffer and the
 * granted guest page gref at byte offset within that page. */
struct hv_copy_seg {
	hv_gref_t gref;
	uint16_t offset;   /* offset + len <= HV_PAGE_SIZE */
	uint16_t len;
	void *local;
	bool to_guest;     /* true: local -> guest (a READ); false: guest -> local */
	int16_t status;    /* out: 0 ok, negative on failure (bad gref, no access...) */
};

struct hv_ops {
	const char *name; /* "xen" or "sim" */

	struct hv_evtchn *(*evtchn_bind)(struct hv *hv, uint16_t domid, uint32_t remote_port,
					 int *err);
	void (*evtchn_unbind)(struct hv_evtchn *ch);
	int (*evtchn_fd)(struct hv_evtchn *ch);
	/* Consume pending notifications and re-arm; 1 if one was pending, 0 if
	 * not, negative errno on failure. */
	int (*evtchn_ack)(struct hv_evtchn *ch);
	int (*evtchn_notify)(struct hv_evtchn *ch);

	/* Copy every segment; fills each status.  Returns 0 if all succeeded,
	 * else -EIO (and the statuses say which failed). */
	int (*grant_copy)(struct hv *hv, uint16_t domid, struct hv_copy_seg *segs, unsigned n);

	/* Map n granted pages contiguously; NULL and *err on failure (no page
	 * stays mapped on failure).  writable=false maps read-only. */
	void *(*map)(struct hv *hv, uint16_t domid, const hv_gref_t *refs, unsigned n,
		     bool writable, int *err);
	/* Unmap exactly what one map call returned (the same n); when this
	 * returns, the grants are no longer in use.  Anything else: -EINVAL,
	 * and nothing is unmapped. */
	int (*unmap)(struct hv *hv, void *addr, unsigned n);

	void (*close)(struct hv *hv);
};

struct hv {
	const struct hv_ops *ops;
	uint16_t self_domid; /* the backend's own domain id (0 in dom0) */
};

/* Real Xen.  NULL with a message if /dev/xen/{evtchn,gntdev} are missing. */
struct hv *hv_open_xen(char *err, size_t errlen);
/* The simulator at DIR (DIR/hypervisor), as the backend domain 0. */
struct hv *hv_open_sim(const char *dir, char *err, size_t errlen);

static inline void hv_close(struct hv *hv)
{
	hv->ops->close(hv);
}

#endif
