/*
 * xenbus.c - the backend side of the XenBus handshake; see xenbus.h.
 *
 * One thread owns every device.  Watch events only mark devices "dirty";
 * dev_sync() then looks at the current xenstore contents (backend dir,
 * online, frontend state, the frontend's domain) and moves the device to
 * where it should be.  Being level-triggered, it does not matter how many
 * events were coalesced, or whether an event was one of our own writes.
 */
#include "xenbus.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <xenstore.h>
#include <xen/io/blkif.h>

#include "formats/image.h"
#include "hv.h"
#include "util/log.h"
#include "vbd.h"
#include "vdev.h"

#define XB_PATH_MAX 256
#define XB_ERROR_MAX 240
#define XB_DRAIN_BATCH 256      /* watch events taken before devices are synced */
#define XB_TXN_TRIES 32
#define XB_SECTOR_SIZE 512
#define XB_PHYS_SECTOR_SIZE 4096

enum dev_phase {
	PH_NEW,        /* nothing open */
	PH_READY,      /* image open, vbd registered, not connected */
	PH_CONNECTED,  /* engine running */
	PH_RELEASED,   /* detached or guest gone: image closed, waiting for removal */
	PH_FAILED,     /* could not set up; waits for the backend dir to go */
};

struct xb_dev {
	struct xenbus *xb;
	struct xb_dev *next;
	uint16_t domid;
	uint32_t devid;
	char be[XB_PATH_MAX];       /* backend directory */
	char fe[XB_PATH_MAX];       /* frontend directory ("" until read) */
	char token[48];             /* of the watch on <fe>/state */
	bool fe_watched;
	bool dirty;
	bool reconnect;             /* we closed to reset a stale frontend: InitWait after */
	bool conn_failed;           /* connect failed: wait for the frontend to restart */
	enum dev_phase phase;

	/* what the image is */
	char path[XB_PARAMS_MAX];
	const char *fmt;            /* NULL = probed (read-only disks only) */
	bool readonly;
	bool cdrom;
	bool discard_ok;            /* toolstack did not veto with discard-enable=0 */
	unsigned caps;
	uint64_t sectors;
	struct vbd *vbd;            /* our reference */
	struct img *img;            /* owned by vbd */

	pthread_mutex_t lock;       /* guards the fields below for the info file */
	struct engine *eng;
	struct engine_params params;
	int be_state, fe_state;
	char error[XB_ERROR_MAX];
};

struct xenbus {
	struct xs_handle *xs;
	struct xenbus_config cfg;
	const char *default_fmt;    /* "raw" for backend/vbd (xl disks) */
	char root[128];             /* /local/domain/<self>/backend/<type> */
	int wake_fd;
	pthread_t thread;
	bool thread_started;
	bool rescan;                /* list root again */
	pthread_mutex_t list_lock;  /* guards devs/nr_devs against xenbus_nr_devices */
	struct xb_dev *devs;
	unsigned nr_devs;
};

/* ------------------------------------------------------------------ */
/* xenstore helpers                                                    */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Read path into buf (len-1 bytes at most).  0, -ENOENT, -E2BIG, -EINVAL
 * (embedded NUL) or another -errno. */
static int xs_get(struct xs_handle *xs, xs_transaction_t t, const char *path, char *buf,
		  size_t len)
{
	unsigned int n = 0;
	char *v = xs_read(xs, t, path, &n);

	if (!v)
		return errno ? -errno : -EIO;
	if (n >= len) {
		free(v);
		return -E2BIG;
	}
	if (strlen(v) != n) {
		free(v);
		return -EINVAL;
	}
	memcpy(buf, v, n + 1);
	free(v);
	return 0;
}

static bool xs_exists(struct xs_handle *xs, const char *path)
{
	unsigned int n;
	char *v = xs_read(xs, XBT_NULL, path, &n);

	free(v);
	return v != NULL;
}

static int dev_get(struct xb_dev *d, const char *key, char *buf, size_t len)
{
	char path[XB_PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", d->be, key);
	return xs_get(d->xb->xs, XBT_NULL, path, buf, len);
}

/* A backend key as a number; missing or invalid gives def. */
static uint64_t dev_get_uint(struct xb_dev *d, const char *key, uint64_t max, uint64_t def)
{
	char buf[XB_VALUE_MAX];
	uint64_t v;

	if (dev_get(d, key, buf, sizeof(buf)) < 0 || xb_parse_uint(buf, max, &v) < 0)
		return def;
	return v;
}

/* A state node: its number, or XB_UNKNOWN if unreadable, -1 if absent. */
static int read_state(struct xs_handle *xs, const char *dir)
{
	char path[XB_PATH_MAX + 8], buf[XB_VALUE_MAX];
	uint64_t v;
	int r;

	snprintf(path, sizeof(path), "%s/state", dir);
	r = xs_get(xs, XBT_NULL, path, buf, sizeof(buf));
	if (r == -ENOENT)
		return -1;
	if (r < 0 || xb_parse_uint(buf, XB_RECONFIGURED, &v) < 0)
		return XB_UNKNOWN;
	return (int)v;
}

struct kv {
	const char *key;
	char val[XB_ERROR_MAX];
	bool rm;               /* remove key instead of writing it */
};

static void kv_set(struct kv *kv, unsigned *n, const char *key, uint64_t val)
{
	kv[*n].key = key;
	kv[*n].rm = false;
	snprintf(kv[*n].val, sizeof(kv[*n].val), "%" PRIu64, val);
	(*n)++;
}

static void kv_rm(struct kv *kv, unsigned *n, const char *key)
{
	kv[*n].key = key;
	kv[*n].rm = true;
	kv[*n].val[0] = '\0';
	(*n)++;
}

/*
 * Write keys (and then state, if state >= 0) into the backend dir in one
 * transaction, only if the dir still exists: a device being removed must
 * not be re-created by a late write.  Retries on EAGAIN (conflict).
 */
static int dev_write(struct xb_dev *d, const struct kv *kv, unsigned n, int state)
{
	struct xs_handle *xs = d->xb->xs;
	char path[XB_PATH_MAX + 64], sval[12];
	int r = -EAGAIN;

	for (int tries = 0; tries < XB_TXN_TRIES; tries++) {
		xs_transaction_t t = xs_transaction_start(xs);
		unsigned int len;
		char *v;

		if (t == XBT_NULL)
			return errno ? -errno : -EIO;
		v = xs_read(xs, t, d->be, &len);
		if (!v) {
			r = errno == ENOENT ? -ENOENT : -EIO;
			xs_transaction_end(xs, t, true);
			return r;
		}
		free(v);
		for (unsigned i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "%s/%s", d->be, kv[i].key);
			if (kv[i].rm) {
				if (!xs_rm(xs, t, path) && errno != ENOENT)
					goto abort;
			} else if (!xs_write(xs, t, path, kv[i].val, (unsigned)strlen(kv[i].val))) {
				goto abort;
			}
		}
		if (state >= 0) {
			snprintf(path, sizeof(path), "%s/state", d->be);
			snprintf(sval, sizeof(sval), "%d", state);
			if (!xs_write(xs, t, path, sval, (unsigned)strlen(sval)))
				goto abort;
		}
		if (xs_transaction_end(xs, t, false))
			return 0;
		if (errno != EAGAIN)
			return errno ? -errno : -EIO;
		continue;
abort:
		r = errno ? -errno : -EIO;
		xs_transaction_end(xs, t, true);
		return r;
	}
	return r;
}

/* Switch the backend state (skipped if already there, unless force). */
static void dev_switch(struct xb_dev *d, int state, bool force)
{
	int cur = read_state(d->xb->xs, d->be), r;

	if (cur == state && !force)
		return;
	r = dev_write(d, NULL, 0, state);
	if (r < 0 && r != -ENOENT) {
		log_err("%s: cannot write state %d: %s", d->be, state, strerror(-r));
		return;
	}
	if (r == 0)
		log_debug("%s: backend state %s -> %s", d->be, xb_state_name(cur),
			  xb_state_name(state));
	pthread_mutex_lock(&d->lock);
	d->be_state = state;
	pthread_mutex_unlock(&d->lock);
}

/* Record a device failure: log it, keep it for the info file, and write
 * it to the backend's "error" key for vbdctl list. */
static void dev_error(struct xb_dev *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dev_error(struct xb_dev *d, const char *fmt, ...)
{
	char path[XB_PATH_MAX + 8], msg[XB_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&d->lock);
	memcpy(d->error, msg, sizeof(msg));
	pthread_mutex_unlock(&d->lock);
	log_err("%s: %s", d->be, msg);
	snprintf(path, sizeof(path), "%s/error", d->be);
	if (xs_exists(d->xb->xs, d->be))
		xs_write(d->xb->xs, XBT_NULL, path, msg, (unsigned)strlen(msg));
}

static void dev_clear_error(struct xb_dev *d)
{
	char path[XB_PATH_MAX + 8];

	pthread_mutex_lock(&d->lock);
	bool had = d->error[0] != '\0';
	d->error[0] = '\0';
	pthread_mutex_unlock(&d->lock);
	if (had) {
		snprintf(path, sizeof(path), "%s/error", d->be);
		xs_rm(d->xb->xs, XBT_NULL, path);
	}
}

/* ------------------------------------------------------------------ */
/* the info file (/vbd/<dev>/info), called from FUSE threads            */

/* Append to buf at *n, never past len-1. */
static void put(char *buf, size_t len, size_t *n, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t len, size_t *n, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (*n + 1 >= len)
		return;
	va_start(ap, fmt);
	r = vsnprintf(buf + *n, len - *n, fmt, ap);
	va_end(ap);
	if (r > 0)
		*n = *n + (size_t)r < len ? *n + (size_t)r : len - 1;
}

/* A JSON string literal of s. */
static void put_json_str(char *buf, size_t len, size_t *n, const char *s)
{
	put(buf, len, n, "\"");
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			put(buf, len, n, "\\%c", c);
		else if (c < 0x20)
			put(buf, len, n, "\\u%04x", c);
		else
			put(buf, len, n, "%c", c);
	}
	put(buf, len, n, "\"");
}

static size_t dev_info(void *arg, char *buf, size_t len, bool json)
{
	struct xb_dev *d = arg;
	const struct xenbus_engine_ops *ops = d->xb->cfg.engine;
	char vdev[32];
	size_t n = 0;

	if (vdev_name(d->devid, vdev, sizeof(vdev)) < 0)
		vdev[0] = '\0';
	pthread_mutex_lock(&d->lock);
	if (json) {
		put(buf, len, &n, "{\"domid\": %u, \"devid\": %" PRIu32 ", \"vdev\": ",
		    (unsigned)d->domid, d->devid);
		put_json_str(buf, len, &n, vdev);
		put(buf, len, &n, ", \"backend\": ");
		put_json_str(buf, len, &n, d->be);
		put(buf, len, &n, ", \"frontend\": ");
		put_json_str(buf, len, &n, d->fe);
		put(buf, len, &n, ", \"backend_state\": \"%s\", \"frontend_state\": \"%s\"",
		    xb_state_name(d->be_state), d->fe_state < 0 ? "absent" : xb_state_name(d->fe_state));
		put(buf, len, &n, ", \"image\": ");
		put_json_str(buf, len, &n, d->path);
		put(buf, len, &n, ", \"format\": ");
		put_json_str(buf, len, &n, d->fmt ? d->fmt : "probed");
		put(buf, len, &n, ", \"mode\": \"%s\", \"sectors\": %" PRIu64, d->readonly ? "r" : "w",
		    d->sectors);
		if (d->error[0]) {
			put(buf, len, &n, ", \"error\": ");
			put_json_str(buf, len, &n, d->error);
		}
		if (d->eng && ops->format_info && n + 16 < len) {
			put(buf, len, &n, ", \"engine\": ");
			size_t m = ops->format_info(d->eng, buf + n, len - n, true);
			n += m;
			while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
				n--;
			if (m == 0)
				put(buf, len, &n, "null");
		}
		put(buf, len, &n, "}\n");
	} else {
		put(buf, len, &n, "domid: %u\ndevid: %" PRIu32 "\nvdev: %s\n", (unsigned)d->domid,
		    d->devid, vdev);
		put(buf, len, &n, "backend: %s\nfrontend: %s\n", d->be, d->fe);
		put(buf, len, &n, "backend-state: %d (%s)\n", d->be_state, xb_state_name(d->be_state));
		if (d->fe_state < 0)
			put(buf, len, &n, "frontend-state: absent\n");
		else
			put(buf, len, &n, "frontend-state: %d (%s)\n", d->fe_state,
			    xb_state_name(d->fe_state));
		put(buf, len, &n, "image: %s\nformat: %s\nmode: %s\nsectors: %" PRIu64 "\n",
		    d->path, d->fmt ? d->fmt : "probed", d->readonly ? "r" : "w", d->sectors);
		if (d->error[0])
			put(buf, len, &n, "error: %s\n", d->error);
		if (d->eng && ops->format_info && n + 1 < len)
			n += ops->format_info(d->eng, buf + n, len - n, false);
	}
	pthread_mutex_unlock(&d->lock);
	if (n >= len)
		n = len - 1;
	buf[n] = '\0';
	return n;
}

/* ------------------------------------------------------------------ */
/* device lifecycle                                                    */

static void dev_publish_features(struct xb_dev *d)
{
	const struct xenbus_config *c = &d->xb->cfg;
	struct kv kv[12];
	unsigned n = 0;
	bool writable = !d->readonly;
	bool discard = writable && d->discard_ok && (d->caps & IMG_CAN_DISCARD);
	int r;

	/* Limits first (rule 24): some frontends read them before InitWait. */
	if (c->max_indirect_segs)
		kv_set(kv, &n, "feature-max-indirect-segments", c->max_indirect_segs);
	kv_set(kv, &n, "max-ring-page-order", c->max_ring_order);
	kv_set(kv, &n, "multi-queue-max-queues", c->max_queues);
	kv_set(kv, &n, "feature-persistent", !c->no_persistent);
	kv_set(kv, &n, "feature-flush-cache", !!(d->caps & IMG_CAN_FLUSH));
	kv_set(kv, &n, "feature-barrier", writable && (d->caps & IMG_CAN_FLUSH));
	kv_set(kv, &n, "feature-discard", discard);
	if (discard) {
		kv_set(kv, &n, "discard-granularity", d->params.discard_granularity);
		kv_set(kv, &n, "discard-alignment", 0);
		kv_set(kv, &n, "discard-secure", !!(d->caps & IMG_CAN_SECURE_DISCARD));
	}
	r = dev_write(d, kv, n, XB_INITWAIT);
	if (r < 0 && r != -ENOENT)
		log_err("%s: cannot publish features: %s", d->be, strerror(-r));
	if (r == 0) {
		pthread_mutex_lock(&d->lock);
		d->be_state = XB_INITWAIT;
		pthread_mutex_unlock(&d->lock);
		log_debug("%s: features published, InitWait", d->be);
	}
}

/* Read the backend's configuration, open the image, create and register
 * the vbd.  Returns 0 or -1 (error recorded). */
static int dev_setup(struct xb_dev *d)
{
	struct xenbus *xb = d->xb;
	char params[XB_PARAMS_MAX], fmtkey[XB_VALUE_MAX], mode[XB_VALUE_MAX], buf[XB_VALUE_MAX];
	char err[256], name[128], vdev[32];
	bool have_fmt;
	struct img *img = NULL;
	struct img_info info;
	unsigned flags;
	int r;

	if ((r = dev_get(d, "params", params, sizeof(params))) < 0) {
		dev_error(d, "cannot read params: %s", strerror(-r));
		return -1;
	}
	r = dev_get(d, "mode", mode, sizeof(mode));
	if (r == -ENOENT)
		strcpy(mode, "w"); /* libxl always writes it; blkback's default */
	if ((r < 0 && r != -ENOENT) || xb_parse_mode(mode, &d->readonly) < 0) {
		dev_error(d, "invalid mode (want r or w)");
		return -1;
	}
	r = dev_get(d, "format", fmtkey, sizeof(fmtkey));
	if (r < 0 && r != -ENOENT) {
		dev_error(d, "cannot read format: %s", strerror(-r));
		return -1;
	}
	have_fmt = r == 0;
	if (xb_image_spec(params, have_fmt ? fmtkey : NULL, d->readonly, xb->default_fmt,
			  &d->fmt, d->path, sizeof(d->path), err, sizeof(err)) < 0) {
		dev_error(d, "%s", err);
		return -1;
	}
	d->cdrom = dev_get(d, "device-type", buf, sizeof(buf)) == 0 && strcmp(buf, "cdrom") == 0;
	d->discard_ok = dev_get_uint(d, "discard-enable", 1, 1) != 0;

	flags = (d->readonly ? IMG_RDONLY : 0) | (xb->cfg.direct_io ? IMG_DIRECT : 0);
	err[0] = '\0';
	img = vbd_adopt_image(d->path, d->fmt, d->readonly);
	if (img)
		log_info("%s: %s is still open for a reader of a detached disk's /vbd files; "
			 "sharing that open image", d->be, d->path);
	r = img ? 0 : img_open(d->path, d->fmt, flags, &img, err, sizeof(err));
	if (r < 0) {
		dev_error(d, "cannot open image: %s", err[0] ? err : strerror(-r));
		return -1;
	}
	d->caps = img_caps(img);
	if (!d->readonly && !(d->caps & IMG_CAN_WRITE)) {
		img_get_info(img, &info);
		if (info.corrupt || info.dirty)
			dev_error(d, "%s is %s: repair it (vbd-img check -r all -f qcow2) or "
				  "attach it with mode r", d->path,
				  info.corrupt ? "marked corrupt" : "dirty (lazy refcounts)");
		else
			dev_error(d, "%s images are read-only in vbdfs; attach %s with mode r",
				  info.format ? info.format : "these", d->path);
		img_close(img);
		return -1;
	}
	if (!d->fmt) {
		img_get_info(img, &info);
		d->fmt = xb_format_name(info.format);
	}
	d->sectors = img_size(img) / XB_SECTOR_SIZE;
	if (img_size(img) % XB_SECTOR_SIZE)
		log_warn("%s: image size %" PRIu64 " is not a multiple of 512; the last %u bytes "
			 "are not visible to the guest", d->path, img_size(img),
			 (unsigned)(img_size(img) % XB_SECTOR_SIZE));

	d->vbd = vbd_create(d->domid, d->devid, img, d->readonly);
	if (!d->vbd) {
		dev_error(d, "out of memory");
		img_close(img);
		return -1;
	}
	d->img = img;
	if (vdev_name(d->devid, vdev, sizeof(vdev)) == 0)
		vbd_set_vdev(d->vbd, vdev);
	snprintf(buf, sizeof(buf), "/local/domain/%u/name", (unsigned)d->domid);
	if (xs_get(xb->xs, XBT_NULL, buf, name, sizeof(name)) == 0)
		vbd_set_domain_name(d->vbd, name);

	/* Discard granularity: one sector.  Linux aligns only the split
	 * points of a discard to the granularity, not its start, so a larger
	 * value (a qcow2 cluster) would make the engine refuse ordinary ext4
	 * discards (seen on real Xen: "I/O error ... op DISCARD").  The image
	 * layer treats discards as advisory and keeps unaligned edges, so
	 * nothing is lost by accepting any sector-aligned range. */
	d->params.discard_granularity = XB_SECTOR_SIZE;

	vbd_set_info_fn(d->vbd, dev_info, d);
	vbd_register(d->vbd);
	dev_clear_error(d);
	d->phase = PH_READY;
	log_info("%s: serving %s (%s, %s, %" PRIu64 " sectors) to domain %u as %s", d->be,
		 d->path, d->fmt ? d->fmt : "?", d->readonly ? "read-only" : "read-write",
		 d->sectors, (unsigned)d->domid, vdev[0] ? vdev : "?");
	return 0;
}

/* Stop the engine (in-flight requests finish or fail; the image is
 * flushed by engine_stop). */
static void dev_disconnect(struct xb_dev *d)
{
	struct engine *e;

	pthread_mutex_lock(&d->lock);
	e = d->eng;
	d->eng = NULL;
	pthread_mutex_unlock(&d->lock);
	if (e) {
		d->xb->cfg.engine->stop(e);
		log_info("%s: disconnected", d->be);
	}
	if (d->phase == PH_CONNECTED)
		d->phase = PH_READY;
}

/* Disconnect, flush and drop the image: the vbd leaves the registry (FUSE
 * readers holding a reference keep the image open until they let go). */
static void dev_release(struct xb_dev *d, const char *why)
{
	dev_disconnect(d);
	if (d->vbd) {
		int r = d->readonly ? 0 : img_flush(d->img);
		if (r < 0)
			log_err("%s: flushing %s failed: %s", d->be, d->path, strerror(-r));
		vbd_set_info_fn(d->vbd, NULL, NULL);
		vbd_unregister(d->vbd);
		vbd_put(d->vbd);
		d->vbd = NULL;
		d->img = NULL;
		log_info("%s: released (%s)", d->be, why);
	}
	if (d->phase != PH_FAILED)
		d->phase = PH_RELEASED;
}

struct fe_reader {
	struct xs_handle *xs;
	const char *dir;
};

static int fe_read(void *ctx, const char *key, char *buf, size_t len)
{
	struct fe_reader *fr = ctx;
	char path[XB_PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", fr->dir, key);
	return xs_get(fr->xs, XBT_NULL, path, buf, len);
}

/* The frontend is Initialised: negotiate, start the engine, publish the
 * disk, Connected.  On failure the device goes Closing (as Linux'
 * xenbus_dev_fatal does) and waits for the frontend to restart. */
static void dev_connect(struct xb_dev *d)
{
	const struct xenbus_config *c = &d->xb->cfg;
	struct fe_reader fr = { d->xb->xs, d->fe };
	struct xb_limits lim = { c->max_queues, c->max_ring_order, !c->no_persistent };
	struct engine_params p;
	struct engine *e;
	struct kv kv[12];
	unsigned n = 0, info;
	char err[256];
	bool discard = !d->readonly && d->discard_ok && (d->caps & IMG_CAN_DISCARD);
	int r;

	memset(&p, 0, sizeof(p));
	if (xb_read_frontend(fe_read, &fr, &lim, &p, err, sizeof(err)) < 0) {
		dev_error(d, "%s", err);
		goto fail;
	}
	p.hv = c->hv;
	p.domid = d->domid;
	p.devid = d->devid;
	p.max_indirect_segs = c->max_indirect_segs;
	p.feature_flush = !!(d->caps & IMG_CAN_FLUSH);
	p.feature_barrier = !d->readonly && (d->caps & IMG_CAN_FLUSH);
	p.feature_discard = discard;
	p.discard_secure = discard && (d->caps & IMG_CAN_SECURE_DISCARD);
	p.discard_granularity = d->params.discard_granularity;
	p.sector_size = XB_SECTOR_SIZE;
	p.readonly = d->readonly;
	p.img = d->img;
	p.stats = vbd_stats(d->vbd);
	p.trace = vbd_trace(d->vbd);

	err[0] = '\0';
	e = c->engine->start(&p, err, sizeof(err));
	if (!e) {
		dev_error(d, "cannot connect: %s", err[0] ? err : "engine failed to start");
		goto fail;
	}
	pthread_mutex_lock(&d->lock);
	d->eng = e;
	d->params = p;
	pthread_mutex_unlock(&d->lock);
	d->phase = PH_CONNECTED;

	/* One transaction, in Linux blkback's order, then Connected. */
	info = (d->readonly ? VDISK_READONLY : 0) | (d->cdrom ? VDISK_CDROM : 0);
	kv_set(kv, &n, "feature-flush-cache", p.feature_flush);
	if (discard) {
		kv_set(kv, &n, "discard-granularity", p.discard_granularity);
		kv_set(kv, &n, "discard-alignment", 0);
		kv_set(kv, &n, "discard-secure", p.discard_secure);
	}
	kv_set(kv, &n, "feature-discard", discard);
	kv_set(kv, &n, "feature-barrier", p.feature_barrier);
	kv_set(kv, &n, "feature-persistent", !c->no_persistent);
	kv_set(kv, &n, "sectors", d->sectors);
	kv_set(kv, &n, "info", info);
	kv_set(kv, &n, "sector-size", XB_SECTOR_SIZE);
	kv_set(kv, &n, "physical-sector-size", XB_PHYS_SECTOR_SIZE);
	r = dev_write(d, kv, n, -1);
	if (r < 0) {
		if (r != -ENOENT)
			dev_error(d, "cannot write the disk keys: %s", strerror(-r));
		dev_disconnect(d);
		goto fail;
	}
	dev_switch(d, XB_CONNECTED, false);
	dev_clear_error(d);
	log_info("%s: connected: %s, %u queue%s, ring order %u%s", d->be, blkif_abi_name(p.abi),
		 p.nr_queues, p.nr_queues == 1 ? "" : "s", p.ring_order,
		 p.persistent ? ", persistent grants" : "");
	return;
fail:
	d->conn_failed = true;
	dev_switch(d, XB_CLOSING, false);
}

/*
 * Online resize, asked for by `vbdctl resize` through the backend key
 * "resize" (new size in bytes).  Grow the image, tell the engine, then in
 * one transaction: new sectors, the request removed, and state Connected
 * rewritten so the frontend's watch fires and it re-reads sectors (as
 * Linux and QEMU do).  A refusal goes to "resize-error" in the same
 * transaction that removes the request.
 */
static void dev_resize(struct xb_dev *d)
{
	char buf[XB_VALUE_MAX];
	uint64_t size;
	struct kv kv[3];
	unsigned n = 0;
	int r = dev_get(d, "resize", buf, sizeof(buf));

	if (r == -ENOENT)
		return;
	if (r < 0 || xb_parse_uint(buf, UINT64_MAX, &size) < 0 || size % XB_SECTOR_SIZE)
		snprintf(kv[n].val, sizeof(kv[n].val), "invalid size (bytes, a multiple of 512)");
	else if (d->readonly)
		snprintf(kv[n].val, sizeof(kv[n].val), "the disk is read-only");
	else if (size / XB_SECTOR_SIZE < d->sectors)
		snprintf(kv[n].val, sizeof(kv[n].val), "disks only grow (now %" PRIu64 " bytes)",
			 d->sectors * XB_SECTOR_SIZE);
	else if ((r = img_resize(d->img, size)) < 0)
		snprintf(kv[n].val, sizeof(kv[n].val), "cannot grow %.120s: %s", d->path,
			 r == -ENOTSUP ? "this image format cannot grow yet" : strerror(-r));
	else
		r = 0, kv[n].val[0] = '\0';

	if (kv[n].val[0]) {
		kv[n].key = "resize-error";
		kv[n].rm = false;
		n++;
		kv_rm(kv, &n, "resize");
		log_warn("%s: resize refused: %s", d->be, kv[0].val);
		dev_write(d, kv, n, -1);
		return;
	}
	pthread_mutex_lock(&d->lock);
	d->sectors = size / XB_SECTOR_SIZE;
	if (d->eng)
		d->xb->cfg.engine->set_sectors(d->eng, d->sectors);
	pthread_mutex_unlock(&d->lock);
	kv_set(kv, &n, "sectors", d->sectors);
	kv_rm(kv, &n, "resize");
	r = dev_write(d, kv, n, d->phase == PH_CONNECTED ? XB_CONNECTED : -1);
	if (r < 0)
		log_err("%s: cannot publish the new size: %s", d->be, strerror(-r));
	else
		log_info("%s: resized to %" PRIu64 " sectors", d->be, d->sectors);
}

/* The frontend's domain is alive (introduced to xenstored, which forgets
 * it when it dies and fires @releaseDomain) and its device dir exists. */
static bool frontend_alive(struct xb_dev *d, int fe_state)
{
	char path[64];

	if (fe_state < 0)
		return false;
	snprintf(path, sizeof(path), "/local/domain/%u", (unsigned)d->domid);
	return xs_exists(d->xb->xs, path) && xs_is_domain_introduced(d->xb->xs, d->domid);
}

/* First look at a device: where its frontend lives; watch its state. */
static int dev_init_frontend(struct xb_dev *d)
{
	char buf[XB_PATH_MAX], prefix[64], wpath[XB_PATH_MAX + 8];
	uint64_t id;
	int r;

	r = dev_get(d, "frontend-id", buf, sizeof(buf));
	if (r < 0 || xb_parse_uint(buf, 0x7fef, &id) < 0 || id != d->domid) {
		dev_error(d, "frontend-id is missing or is not %u", (unsigned)d->domid);
		return -1;
	}
	/* shorter than fe[] so that "<fe>/<key>" paths always fit */
	r = dev_get(d, "frontend", buf, sizeof(buf) - 64);
	snprintf(prefix, sizeof(prefix), "/local/domain/%u/", (unsigned)d->domid);
	if (r < 0 || strncmp(buf, prefix, strlen(prefix)) != 0 || strstr(buf, "/../") ||
	    buf[strlen(buf) - 1] == '/') {
		dev_error(d, "frontend path is missing or not under %s", prefix);
		return -1;
	}
	strcpy(d->fe, buf);
	snprintf(wpath, sizeof(wpath), "%s/state", d->fe);
	if (!xs_watch(d->xb->xs, wpath, d->token)) {
		dev_error(d, "cannot watch %s: %s", wpath, strerror(errno));
		return -1;
	}
	d->fe_watched = true;
	return 0;
}

/*
 * Bring the device where the store says it should be.  Called whenever
 * anything about it may have changed; idempotent.
 */
static void dev_sync(struct xb_dev *d)
{
	struct xs_handle *xs = d->xb->xs;
	int be_state, fe_state;
	bool online;

	if (d->phase == PH_FAILED)
		return;
	if (!d->fe[0] && dev_init_frontend(d) < 0) {
		d->phase = PH_FAILED;
		dev_switch(d, XB_CLOSED, false);
		return;
	}
	online = dev_get_uint(d, "online", 1, 1) != 0;
	fe_state = read_state(xs, d->fe);
	be_state = read_state(xs, d->be);
	pthread_mutex_lock(&d->lock);
	d->fe_state = fe_state;
	d->be_state = be_state;
	pthread_mutex_unlock(&d->lock);

	if (!frontend_alive(d, fe_state)) {
		/* The guest died or its device dir was removed. */
		if (d->phase == PH_READY || d->phase == PH_CONNECTED) {
			dev_release(d, "frontend gone");
			dev_switch(d, XB_CLOSED, false);
		}
		return;
	}
	if (d->phase == PH_NEW || (d->phase == PH_RELEASED && online && fe_state == XB_INITIALISING)) {
		if (!online)
			return;
		if (dev_setup(d) < 0) {
			d->phase = PH_FAILED;
			dev_switch(d, XB_CLOSED, false);
			return;
		}
		d->conn_failed = false;
		if (fe_state == XB_INITIALISED || fe_state == XB_CONNECTED) {
			/* A frontend connected to an earlier backend: make it
			 * close, then offer a new connection. */
			log_info("%s: frontend is %s from an earlier connection; resetting it", d->be,
				 xb_state_name(fe_state));
			d->reconnect = true;
			dev_switch(d, XB_CLOSING, false);
		} else {
			dev_publish_features(d);
		}
		return;
	}
	if (d->phase == PH_RELEASED)
		return;
	dev_resize(d);

	switch (fe_state) {
	case XB_INITIALISING:
	case XB_INITWAIT:
		/* (Re)starting frontend: offer a connection. */
		if (d->phase == PH_CONNECTED)
			dev_disconnect(d);
		d->conn_failed = false;
		d->reconnect = false;
		if (online && be_state != XB_INITWAIT)
			dev_publish_features(d);
		break;
	case XB_INITIALISED:
	case XB_CONNECTED:
		if (d->phase == PH_CONNECTED || d->conn_failed)
			break;
		if (online && be_state == XB_INITWAIT)
			dev_connect(d);
		else if (be_state != XB_CLOSING && be_state != XB_CLOSED)
			dev_switch(d, XB_CLOSING, false); /* not offered: make it start over */
		break;
	case XB_CLOSING:
		if (be_state != XB_CLOSED)
			dev_switch(d, XB_CLOSING, false);
		break;
	default: /* Closed, Unknown, or nonsense: the connection is over */
		/* ...unless we just offered a new one to this Closed frontend
		 * (after a reset or a restart of vbdfs): Linux blkfront
		 * reconnects from Closed when it sees InitWait. */
		if (fe_state == XB_CLOSED && online && d->phase == PH_READY &&
		    be_state == XB_INITWAIT)
			break;
		/* Leave Connected at once: stopping the engine waits for the
		 * requests in flight, and a frontend re-probed meanwhile (Linux
		 * blkfront unbound and bound again) that still saw Connected
		 * would "connect" without rings and hang its I/O. */
		if (be_state == XB_CONNECTED)
			dev_switch(d, XB_CLOSING, false);
		dev_disconnect(d);
		/* Detached: let go of the image before saying Closed, so a
		 * toolstack that waits for Closed (libxl, vbdctl detach) finds
		 * the image free for qemu-img and friends when it returns. */
		if (!online)
			dev_release(d, "detached");
		dev_switch(d, XB_CLOSED, false);
		if (online && d->reconnect) {
			d->reconnect = false;
			dev_publish_features(d);
		}
		break;
	}
	/* Detach requested while the frontend never connected: nothing
	 * to wait for. */
	if (!online && d->phase == PH_READY &&
	    (fe_state == XB_INITIALISING || fe_state == XB_INITWAIT)) {
		dev_release(d, "detached");
		dev_switch(d, XB_CLOSED, false);
	}
}

/* ------------------------------------------------------------------ */
/* the device list and the watcher thread                              */

static struct xb_dev *dev_find(struct xenbus *xb, uint16_t domid, uint32_t devid)
{
	for (struct xb_dev *d = xb->devs; d; d = d->next)
		if (d->domid == domid && d->devid == devid)
			return d;
	return NULL;
}

static struct xb_dev *dev_add(struct xenbus *xb, uint16_t domid, uint32_t devid)
{
	struct xb_dev *d = calloc(1, sizeof(*d));

	if (!d) {
		log_err("out of memory for device %u/%u", (unsigned)domid, devid);
		return NULL;
	}
	d->xb = xb;
	d->domid = domid;
	d->devid = devid;
	d->phase = PH_NEW;
	d->fe_state = -1;
	d->be_state = XB_UNKNOWN;
	d->dirty = true;
	snprintf(d->be, sizeof(d->be), "%s/%u/%u", xb->root, (unsigned)domid, devid);
	snprintf(d->token, sizeof(d->token), "fe/%u/%u", (unsigned)domid, devid);
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_lock(&xb->list_lock);
	d->next = xb->devs;
	xb->devs = d;
	xb->nr_devs++;
	pthread_mutex_unlock(&xb->list_lock);
	return d;
}

static void dev_free(struct xb_dev *d)
{
	struct xenbus *xb = d->xb;
	char path[XB_PATH_MAX + 8];

	dev_release(d, "backend removed");
	if (d->fe_watched) {
		snprintf(path, sizeof(path), "%s/state", d->fe);
		xs_unwatch(xb->xs, path, d->token);
	}
	pthread_mutex_lock(&xb->list_lock);
	for (struct xb_dev **p = &xb->devs; *p; p = &(*p)->next) {
		if (*p == d) {
			*p = d->next;
			break;
		}
	}
	xb->nr_devs--;
	pthread_mutex_unlock(&xb->list_lock);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* "<domid>/<devid>" at s (followed by '/' or the end) -> numbers. */
static bool parse_dev_path(const char *s, uint16_t *domid, uint32_t *devid)
{
	char a[16], b[16];
	const char *slash = strchr(s, '/'), *end;
	uint64_t x, y;

	if (!slash || slash - s >= (long)sizeof(a))
		return false;
	memcpy(a, s, (size_t)(slash - s));
	a[slash - s] = '\0';
	end = strchr(slash + 1, '/');
	if (!end)
		end = slash + 1 + strlen(slash + 1);
	if (end - slash - 1 >= (long)sizeof(b))
		return false;
	memcpy(b, slash + 1, (size_t)(end - slash - 1));
	b[end - slash - 1] = '\0';
	if (xb_parse_uint(a, 0x7fef, &x) < 0 || xb_parse_uint(b, UINT32_MAX, &y) < 0 || y == 0)
		return false;
	*domid = (uint16_t)x;
	*devid = (uint32_t)y;
	return true;
}

static void handle_watch(struct xenbus *xb, const char *path, const char *token)
{
	size_t rl = strlen(xb->root);
	uint16_t domid;
	uint32_t devid;
	struct xb_dev *d;

	if (strcmp(token, "be") == 0) {
		if (strncmp(path, xb->root, rl) != 0)
			return;
		path += rl;
		if (path[0] != '/' || !parse_dev_path(path + 1, &domid, &devid)) {
			xb->rescan = true; /* the root or a domain dir changed */
			return;
		}
		d = dev_find(xb, domid, devid);
		if (d)
			d->dirty = true;
		else
			dev_add(xb, domid, devid);
	} else if (strncmp(token, "fe/", 3) == 0) {
		if (parse_dev_path(token + 3, &domid, &devid) && (d = dev_find(xb, domid, devid)))
			d->dirty = true;
	} else if (strcmp(token, "rel") == 0) {
		for (d = xb->devs; d; d = d->next)
			d->dirty = true;
	}
}

/* List root/<domid>/<devid>: add devices not known yet, and mark every
 * device dirty (one that vanished is then freed by the sync). */
static void rescan(struct xenbus *xb)
{
	char path[192];
	char **doms, **devs;
	unsigned nd = 0, nv = 0;
	uint64_t domid, devid;

	xb->rescan = false;
	for (struct xb_dev *d = xb->devs; d; d = d->next)
		d->dirty = true;
	doms = xs_directory(xb->xs, XBT_NULL, xb->root, &nd);
	for (unsigned i = 0; doms && i < nd; i++) {
		if (xb_parse_uint(doms[i], 0x7fef, &domid) < 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", xb->root, doms[i]);
		devs = xs_directory(xb->xs, XBT_NULL, path, &nv);
		for (unsigned j = 0; devs && j < nv; j++) {
			if (xb_parse_uint(devs[j], UINT32_MAX, &devid) < 0 || devid == 0)
				continue;
			if (!dev_find(xb, (uint16_t)domid, (uint32_t)devid))
				dev_add(xb, (uint16_t)domid, (uint32_t)devid);
		}
		free(devs);
	}
	free(doms);
}

static void sync_dirty(struct xenbus *xb)
{
	struct xb_dev *d, *next;

	if (xb->rescan)
		rescan(xb);
	for (d = xb->devs; d; d = next) {
		next = d->next;
		if (!d->dirty)
			continue;
		d->dirty = false;
		if (!xs_exists(xb->xs, d->be))
			dev_free(d);
		else
			dev_sync(d);
	}
}

/* Take up to XB_DRAIN_BATCH pending watch events.  Returns false if the
 * xenstore connection failed. */
static bool drain_watches(struct xenbus *xb, bool *more)
{
	*more = true;
	for (int i = 0; i < XB_DRAIN_BATCH; i++) {
		char **w = xs_check_watch(xb->xs);
		if (!w) {
			*more = false;
			return errno == EAGAIN;
		}
		handle_watch(xb, w[XS_WATCH_PATH], w[XS_WATCH_TOKEN]);
		free(w);
	}
	return true;
}

static void *watcher(void *arg)
{
	struct xenbus *xb = arg;
	struct pollfd pfd[2] = {
		{ .fd = xs_fileno(xb->xs), .events = POLLIN },
		{ .fd = xb->wake_fd, .events = POLLIN },
	};
	bool more = false;

	for (;;) {
		/* After a full batch, more events may be queued inside
		 * libxenstore: take them without waiting. */
		if (poll(pfd, 2, more ? 0 : -1) < 0 && errno != EINTR) {
			log_err("xenbus: poll: %s", strerror(errno));
			break;
		}
		if (pfd[1].revents)
			break;
		/* Coalesce: drain a batch, then sync each dirty device once. */
		more = false;
		if (!drain_watches(xb, &more)) {
			char why[128];
			snprintf(why, sizeof(why), "lost the xenstore connection: %s", strerror(errno));
			log_err("xenbus: %s", why);
			if (xb->cfg.fatal)
				xb->cfg.fatal(why);
			break;
		}
		sync_dirty(xb);
	}
	/* Clean shutdown of every device. */
	while (xb->devs) {
		struct xb_dev *d = xb->devs;
		if (d->phase == PH_READY || d->phase == PH_CONNECTED) {
			dev_switch(d, XB_CLOSING, false);
			dev_release(d, "vbdfs stopping");
			dev_switch(d, XB_CLOSED, false);
		}
		dev_free(d);
	}
	return NULL;
}

/* ------------------------------------------------------------------ */

void xenbus_config_defaults(struct xenbus_config *cfg)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	memset(cfg, 0, sizeof(*cfg));
	cfg->max_queues = n < 1 ? 1 : n > ENGINE_MAX_QUEUES ? ENGINE_MAX_QUEUES : (unsigned)n;
	cfg->max_ring_order = ENGINE_MAX_RING_ORDER;
	cfg->max_indirect_segs = ENGINE_DEFAULT_INDIRECT;
}

struct xenbus *xenbus_start(const struct xenbus_config *cfg, char *err, size_t errlen)
{
	struct xenbus *xb;
	const char *type = cfg->backend_type ? cfg->backend_type : "vbdfs";
	unsigned self = cfg->hv ? cfg->hv->self_domid : 0;

	if (strcmp(type, "vbdfs") != 0 && strcmp(type, "vbd") != 0) {
		set_err(err, errlen, "unknown backend type '%s' (use vbdfs or vbd)", type);
		return NULL;
	}
	if (!cfg->engine) {
		set_err(err, errlen, "no request engine");
		return NULL;
	}
	xb = calloc(1, sizeof(*xb));
	if (!xb) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	xb->cfg = *cfg;
	xb->cfg.backend_type = type;
	if (xb->cfg.max_queues < 1 || xb->cfg.max_queues > ENGINE_MAX_QUEUES ||
	    xb->cfg.max_ring_order > ENGINE_MAX_RING_ORDER) {
		set_err(err, errlen, "queues must be 1..%u and the ring order 0..%u",
			ENGINE_MAX_QUEUES, ENGINE_MAX_RING_ORDER);
		free(xb);
		return NULL;
	}
	xb->default_fmt = strcmp(type, "vbd") == 0 ? "raw" : NULL;
	snprintf(xb->root, sizeof(xb->root), "/local/domain/%u/backend/%s", self, type);
	pthread_mutex_init(&xb->list_lock, NULL);
	xb->wake_fd = -1;
	xb->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (xb->wake_fd < 0) {
		set_err(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	xb->xs = xs_open(cfg->socket_only ? XS_OPEN_SOCKETONLY : 0);
	if (!xb->xs) {
		const char *p = getenv("XENSTORED_PATH");
		set_err(err, errlen, "cannot connect to xenstore%s%s: %s", p ? " at " : "",
			p ? p : "", strerror(errno));
		goto fail;
	}
	/* The initial watch events (one per watch) start the first scan. */
	if (!xs_watch(xb->xs, xb->root, "be") || !xs_watch(xb->xs, "@releaseDomain", "rel")) {
		set_err(err, errlen, "cannot watch %s: %s", xb->root, strerror(errno));
		goto fail;
	}
	xb->rescan = true;
	if (pthread_create(&xb->thread, NULL, watcher, xb) != 0) {
		set_err(err, errlen, "cannot start the xenbus thread");
		goto fail;
	}
	xb->thread_started = true;
	log_info("watching %s (max %u queues, ring order %u, %u indirect segments)", xb->root,
		 xb->cfg.max_queues, xb->cfg.max_ring_order, xb->cfg.max_indirect_segs);
	return xb;
fail:
	if (xb->xs)
		xs_close(xb->xs);
	if (xb->wake_fd >= 0)
		close(xb->wake_fd);
	pthread_mutex_destroy(&xb->list_lock);
	free(xb);
	return NULL;
}

void xenbus_stop(struct xenbus *xb)
{
	uint64_t one = 1;

	if (!xb)
		return;
	if (xb->thread_started) {
		if (write(xb->wake_fd, &one, sizeof(one)) != sizeof(one))
			log_err("xenbus: cannot wake the watcher: %s", strerror(errno));
		pthread_join(xb->thread, NULL);
	}
	xs_close(xb->xs);
	close(xb->wake_fd);
	pthread_mutex_destroy(&xb->list_lock);
	free(xb);
}

unsigned xenbus_nr_devices(struct xenbus *xb)
{
	unsigned n;

	pthread_mutex_lock(&xb->list_lock);
	n = xb->nr_devs;
	pthread_mutex_unlock(&xb->list_lock);
	return n;
}
