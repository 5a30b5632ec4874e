/*
 * hv_xen.c - the real-Xen transport of hv.h: event channels through
 * libxenevtchn (/dev/xen/evtchn), grants through libxengnttab
 * (/dev/xen/gntdev).
 *
 * Data moves by grant copy (xengnttab_grant_copy, the gntdev copy ioctl),
 * as QEMU's xen-block does: Xen copies between the guest's granted page and
 * our buffer, nothing stays mapped, and a bad grant only fails its own
 * segment.  Mapping (xengnttab_map_domain_grant_refs, one batch per call)
 * is for the ring pages and for persistent grants.
 *
 * Every bound event channel gets its own xenevtchn handle, so each ring
 * thread owns a pollable fd that only its channel makes readable.
 *
 * Nothing here aborts or exits: a guest that hands us a bad grant
 * reference or port gets an error from the call, and the library's own
 * error messages go through a rate-limited logger because a guest can
 * trigger them at will.
 */
#include "hv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>
#include <xentoollog.h>
#include <xen/grant_table.h>
#include <xen/xen.h>

#include "util/log.h"

/* Grant copy segments handed to the kernel per ioctl (bounded stack use;
 * gntdev itself batches by 16 internally). */
#define XEN_COPY_BATCH 128u

/* Upper bound for the gntdev map limit we ask for: a full set of rings
 * (16 queues x 16 pages) plus the persistent grants of many devices. */
#define XEN_MAX_MAPPED_GRANTS 65536u

struct hv_xen {
	struct hv hv;
	xengnttab_handle *gt;
};

struct hv_evtchn {
	xenevtchn_handle *xe;
	evtchn_port_t local_port;
	uint16_t domid;
	uint32_t remote_port;
};

/* ---- the libraries' messages, rate limited --------------------------- */

static struct ratelimit xen_lib_rl = RATELIMIT_INIT(10, 5);

static void xen_logger_vmessage(struct xentoollog_logger *logger, xentoollog_level level,
				int errnoval, const char *context, const char *format,
				va_list al)
{
	char msg[512];

	if (level < XTL_WARN)
		return;
	vsnprintf(msg, sizeof(msg), format, al);
	log_limited(&xen_lib_rl, level >= XTL_ERROR ? VLOG_WARN : VLOG_INFO, "%s: %s%s%s",
		    context ? context : "xen", msg, errnoval >= 0 ? ": " : "",
		    errnoval >= 0 ? strerror(errnoval) : "");
}

static void xen_logger_destroy(struct xentoollog_logger *logger)
{
}

static struct xentoollog_logger xen_logger = {
	.vmessage = xen_logger_vmessage,
	.progress = NULL,
	.destroy = xen_logger_destroy,
};

/* ---- event channels -------------------------------------------------- */

static struct hv_evtchn *xen_evtchn_bind(struct hv *hv, uint16_t domid, uint32_t remote_port,
					 int *err)
{
	struct hv_evtchn *ch = calloc(1, sizeof(*ch));
	xenevtchn_port_or_error_t port;
	int fd, flags;

	if (!ch) {
		*err = -ENOMEM;
		return NULL;
	}
	ch->xe = xenevtchn_open(&xen_logger, 0);
	if (!ch->xe) {
		*err = -(errno ? errno : EIO);
		free(ch);
		return NULL;
	}
	port = xenevtchn_bind_interdomain(ch->xe, domid, remote_port);
	if (port < 0) {
		*err = -(errno ? errno : EINVAL);
		xenevtchn_close(ch->xe);
		free(ch);
		return NULL;
	}
	/* Non-blocking, so evtchn_ack can ask "anything pending?" without
	 * sleeping: the evtchn device then answers EAGAIN. */
	fd = xenevtchn_fd(ch->xe);
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		*err = -errno;
		xenevtchn_unbind(ch->xe, port);
		xenevtchn_close(ch->xe);
		free(ch);
		return NULL;
	}
	ch->local_port = port;
	ch->domid = domid;
	ch->remote_port = remote_port;
	*err = 0;
	return ch;
}

static void xen_evtchn_unbind(struct hv_evtchn *ch)
{
	if (!ch)
		return;
	xenevtchn_unbind(ch->xe, ch->local_port);
	xenevtchn_close(ch->xe);
	free(ch);
}

static int xen_evtchn_fd(struct hv_evtchn *ch)
{
	return xenevtchn_fd(ch->xe);
}

/*
 * The kernel masks a port when it queues it for reading; reading it
 * (xenevtchn_pending) and unmasking re-arms it.  This handle has exactly
 * one port bound, so at most one entry is queued.
 */
static int xen_evtchn_ack(struct hv_evtchn *ch)
{
	int got = 0;

	for (;;) {
		xenevtchn_port_or_error_t p = xenevtchn_pending(ch->xe);

		if (p < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return got;
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (xenevtchn_unmask(ch->xe, (evtchn_port_t)p) < 0)
			return -errno;
		got = 1;
	}
}

static int xen_evtchn_notify(struct hv_evtchn *ch)
{
	return xenevtchn_notify(ch->xe, ch->local_port) < 0 ? -errno : 0;
}

/* ---- grant copy ------------------------------------------------------ */

/* A Xen grant status (GNTST_*) as a negative errno. */
static int16_t gntst_to_errno(int16_t st)
{
	switch (st) {
	case GNTST_okay:
		return 0;
	case GNTST_bad_domain:
		return -ESRCH;
	case GNTST_bad_gntref:
	case GNTST_bad_copy_arg:
		return -EINVAL;
	case GNTST_permission_denied:
		return -EACCES;
	case GNTST_eagain:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

static void fill_copy_seg(xengnttab_grant_copy_segment_t *x, uint16_t domid,
			  const struct hv_copy_seg *s)
{
	memset(x, 0, sizeof(*x));
	if (s->to_guest) {
		x->source.virt = s->local;
		x->dest.foreign.ref = s->gref;
		x->dest.foreign.offset = s->offset;
		x->dest.foreign.domid = domid;
		x->flags = GNTCOPY_dest_gref;
	} else {
		x->source.foreign.ref = s->gref;
		x->source.foreign.offset = s->offset;
		x->source.foreign.domid = domid;
		x->dest.virt = s->local;
		x->flags = GNTCOPY_source_gref;
	}
	x->len = s->len;
	x->status = GNTST_general_error;
}

/*
 * Copy one batch: segs[0..n) are all valid (offset + len within a page,
 * len > 0).  The ioctl fails as a whole only for problems with the call
 * itself (e.g. a local buffer the kernel cannot pin); then each segment
 * is retried alone so the statuses still say exactly which one failed.
 */
static void xen_copy_batch(struct hv_xen *x, uint16_t domid, struct hv_copy_seg **segs,
			   unsigned n)
{
	xengnttab_grant_copy_segment_t xs[XEN_COPY_BATCH];
	unsigned i;

	for (i = 0; i < n; i++)
		fill_copy_seg(&xs[i], domid, segs[i]);
	if (xengnttab_grant_copy(x->gt, n, xs) == 0) {
		for (i = 0; i < n; i++)
			segs[i]->status = gntst_to_errno(xs[i].status);
		return;
	}
	if (n == 1) {
		segs[0]->status = (int16_t)-(errno ? errno : EIO);
		return;
	}
	for (i = 0; i < n; i++)
		xen_copy_batch(x, domid, &segs[i], 1);
}

static int xen_grant_copy(struct hv *hv, uint16_t domid, struct hv_copy_seg *segs, unsigned n)
{
	struct hv_xen *x = (struct hv_xen *)hv;
	struct hv_copy_seg *batch[XEN_COPY_BATCH];
	unsigned i, nb = 0;
	int rc = 0;

	for (i = 0; i < n; i++) {
		struct hv_copy_seg *s = &segs[i];

		/* The gntdev ioctl rejects the whole call if one segment
		 * crosses its grant page, so check before asking. */
		if ((unsigned)s->offset + s->len > HV_PAGE_SIZE || !s->local) {
			s->status = -EINVAL;
			continue;
		}
		if (s->len == 0) {
			s->status = 0;
			continue;
		}
		batch[nb++] = s;
		if (nb == XEN_COPY_BATCH) {
			xen_copy_batch(x, domid, batch, nb);
			nb = 0;
		}
	}
	if (nb)
		xen_copy_batch(x, domid, batch, nb);
	for (i = 0; i < n; i++)
		if (segs[i].status != 0)
			rc = -EIO;
	return rc;
}

/* ---- grant map ------------------------------------------------------- */

static void *xen_map(struct hv *hv, uint16_t domid, const hv_gref_t *refs, unsigned n,
		     bool writable, int *err)
{
	struct hv_xen *x = (struct hv_xen *)hv;
	uint32_t stack_refs[16];
	uint32_t *r = stack_refs;
	void *addr;
	unsigned i;

	if (n == 0 || n > XEN_MAX_MAPPED_GRANTS) {
		*err = -EINVAL;
		return NULL;
	}
	if (n > sizeof(stack_refs) / sizeof(stack_refs[0])) {
		r = malloc(n * sizeof(*r));
		if (!r) {
			*err = -ENOMEM;
			return NULL;
		}
	}
	for (i = 0; i < n; i++)
		r[i] = refs[i];
	/* One gntdev batch: on partial failure nothing stays mapped. */
	addr = xengnttab_map_domain_grant_refs(x->gt, n, domid, r,
					       writable ? PROT_READ | PROT_WRITE : PROT_READ);
	*err = addr ? 0 : -(errno ? errno : EIO);
	if (r != stack_refs)
		free(r);
	return addr;
}

static int xen_unmap(struct hv *hv, void *addr, unsigned n)
{
	struct hv_xen *x = (struct hv_xen *)hv;

	if (!addr || n == 0)
		return -EINVAL;
	return xengnttab_unmap(x->gt, addr, n) < 0 ? -errno : 0;
}

static void xen_close(struct hv *hv)
{
	struct hv_xen *x = (struct hv_xen *)hv;

	if (!x)
		return;
	xengnttab_close(x->gt);
	free(x);
}

static const struct hv_ops xen_ops = {
	.name = "xen",
	.evtchn_bind = xen_evtchn_bind,
	.evtchn_unbind = xen_evtchn_unbind,
	.evtchn_fd = xen_evtchn_fd,
	.evtchn_ack = xen_evtchn_ack,
	.evtchn_notify = xen_evtchn_notify,
	.grant_copy = xen_grant_copy,
	.map = xen_map,
	.unmap = xen_unmap,
	.close = xen_close,
};

/*
 * Our own domain id: 0 in dom0, the driver domain's id elsewhere.  xenbus
 * serves /local/domain/<it>/backend.  The toolstack writes it to our home
 * directory in xenstore, where a relative path starts; if it is missing
 * or unreadable we are taken to be dom0, as before.
 */
static uint16_t xen_self_domid(void)
{
	struct xs_handle *xs = xs_open(0);
	unsigned int len = 0;
	char *v = xs ? xs_read(xs, XBT_NULL, "domid", &len) : NULL;
	char *end = NULL;
	unsigned long id = v ? strtoul(v, &end, 10) : 0;
	uint16_t self = 0;

	if (v && end != v && *end == '\0' && id < DOMID_FIRST_RESERVED)
		self = (uint16_t)id;
	else if (v)
		log_warn("xenstore says our domid is '%s'; taking 0", v);
	free(v);
	if (xs)
		xs_close(xs);
	return self;
}

struct hv *hv_open_xen(char *err, size_t errlen)
{
	struct hv_xen *x;
	xenevtchn_handle *probe;

	/* Fail early with a clear reason if the event channel device is
	 * missing, rather than at the first guest. */
	probe = xenevtchn_open(&xen_logger, 0);
	if (!probe) {
		snprintf(err, errlen,
			 "cannot open /dev/xen/evtchn: %s (not a Xen domain, or module "
			 "xen-evtchn not loaded)",
			 strerror(errno));
		return NULL;
	}
	xenevtchn_close(probe);

	x = calloc(1, sizeof(*x));
	if (!x) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	x->gt = xengnttab_open(&xen_logger, 0);
	if (!x->gt) {
		snprintf(err, errlen,
			 "cannot open /dev/xen/gntdev: %s (module xen-gntdev not loaded?)",
			 strerror(errno));
		free(x);
		return NULL;
	}
	/* Older gntdev drivers cap mappings per file; newer ones ignore
	 * this.  Failure is not fatal: maps then fail with an error. */
	if (xengnttab_set_max_grants(x->gt, XEN_MAX_MAPPED_GRANTS) < 0)
		log_debug("xengnttab_set_max_grants: %s", strerror(errno));
	x->hv.ops = &xen_ops;
	x->hv.self_domid = xen_self_domid();
	if (x->hv.self_domid)
		log_info("running in domain %u: serving /local/domain/%u/backend",
			 x->hv.self_domid, x->hv.self_domid);
	return &x->hv;
}
