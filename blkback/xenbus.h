/*
 * xenbus.h - the backend side of the XenBus handshake, over libxenstore.
 *
 * xenbus_start() connects to xenstore (the real xenstored, or the
 * simulator's when XENSTORED_PATH points at DIR/xenstored), watches
 *     /local/domain/<self>/backend/<type>/          (type "vbdfs" or "vbd")
 * and runs one thread that drives every device found there:
 *
 *   backend dir appears   read params/format/mode, open the image, create
 *                         and register the struct vbd, publish the feature
 *                         keys, state InitWait (2)
 *   frontend 3 or 4       read and check its keys (protocol, rings, event
 *                         channels, queues), engine start, one transaction
 *                         with sectors/info/sector-size..., state 4
 *   frontend 5            state Closing (5)
 *   frontend 6 / 0        engine stop, state Closed (6); with online=0 the
 *                         device is also released (image closed, vbd gone)
 *   frontend 1 after 6    features again, state InitWait (reconnect)
 *   backend dir removed,  engine stop, image flushed and closed, vbd
 *   guest died            unregistered
 *   resize key written    grow the image, engine_set_sectors, rewrite
 *                         sectors and state 4 in one transaction
 *
 * Watch events are drained promptly and coalesced into one "dirty" flag per
 * device, so a guest writing its state in a loop costs one resync per
 * drain, not unbounded memory (XSA-349).  A device's failure is logged,
 * written to its backend "error" key and affects only that device.
 *
 * Everything a guest writes is read with a bounded length and checked; an
 * invalid value fails that device's connection, never the daemon.
 */
#ifndef VBDFS_XENBUS_H
#define VBDFS_XENBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

struct hv;
struct xenbus;

/* The request engine, as xenbus.c calls it.  xenbus_engine_default holds
 * engine_start & co (engine.h); tests may pass a fake. */
struct xenbus_engine_ops {
	struct engine *(*start)(const struct engine_params *p, char *err, size_t errlen);
	void (*stop)(struct engine *e);
	void (*set_sectors)(struct engine *e, uint64_t sectors);
	size_t (*format_info)(struct engine *e, char *buf, size_t len, bool json);
};
extern const struct xenbus_engine_ops xenbus_engine_default;

struct xenbus_config {
	struct hv *hv;                 /* passed to the engine; its self_domid is ours */
	const char *backend_type;      /* "vbdfs" (NULL = default) or "vbd" */
	const struct xenbus_engine_ops *engine;
	unsigned max_queues;           /* multi-queue-max-queues, 1..ENGINE_MAX_QUEUES */
	unsigned max_ring_order;       /* max-ring-page-order, 0..ENGINE_MAX_RING_ORDER */
	unsigned max_indirect_segs;    /* feature-max-indirect-segments; 0 = none */
	bool no_persistent;            /* do not offer feature-persistent */
	bool direct_io;                /* open images with IMG_DIRECT */
	/* Only the xenstored socket (XENSTORED_PATH), never the /dev/xen
	 * fallback: the simulator, even on a Xen host. */
	bool socket_only;
	/* Called (on the watcher thread) if the xenstore connection is lost
	 * and nothing can be served any more; may be NULL. */
	void (*fatal)(const char *why);
};

/* Defaults: as many queues as online CPUs (at most ENGINE_MAX_QUEUES),
 * ring order ENGINE_MAX_RING_ORDER, ENGINE_DEFAULT_INDIRECT segments,
 * persistent grants offered.  The engine is left for the caller to set
 * (&xenbus_engine_default, or a fake in tests). */
void xenbus_config_defaults(struct xenbus_config *cfg);

/* Connect to xenstore, set the watches and start the watcher thread.
 * NULL and a one-line message on failure. */
struct xenbus *xenbus_start(const struct xenbus_config *cfg, char *err, size_t errlen);

/* Disconnect every device cleanly (backend Closing, engine stopped, image
 * flushed and closed, vbd unregistered, backend Closed), stop the thread
 * and close the xenstore connection. */
void xenbus_stop(struct xenbus *xb);

/* Number of devices currently known (any state), for tests and logs. */
unsigned xenbus_nr_devices(struct xenbus *xb);


/* ---- Pure helpers: the parsing and checking of xenstore values ---- */

/* XenbusState numbers and names ("Initialising", "Connected"...). */
enum xb_state {
	XB_UNKNOWN = 0, XB_INITIALISING = 1, XB_INITWAIT = 2, XB_INITIALISED = 3,
	XB_CONNECTED = 4, XB_CLOSING = 5, XB_CLOSED = 6, XB_RECONFIGURING = 7,
	XB_RECONFIGURED = 8,
};
const char *xb_state_name(int state);

/* Longest value read from a key the other side controls (rule 20). */
#define XB_VALUE_MAX 64
/* Longest backend params value (image path, maybe "FORMAT:" before it). */
#define XB_PARAMS_MAX 1024

/* Strict unsigned decimal: digits only (no sign, space or suffix), no
 * leading zeros except "0", value <= max.  0 or -EINVAL / -ERANGE. */
int xb_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* Backend "mode": "r"/"ro" (read-only) or "w"/"rw".  0 or -EINVAL. */
int xb_parse_mode(const char *s, bool *readonly);

/* A format name as written in configuration, normalised: "raw" ("aio" is
 * an alias, as in libxl), "qcow2" or "qcow".  NULL if unknown. */
const char *xb_format_name(const char *s);

/*
 * Which image to open, from the backend's params and format keys:
 *   format key present        params is the path, format that key
 *   params "FORMAT:PATH"      a known format name before the first ':'
 *   otherwise                 default_fmt (backend/vbd disks from xl:
 *                             "raw"); with no default, only a read-only
 *                             disk may have its format probed (*fmt = NULL)
 * Writes the path (and the format name, a static string, or NULL = probe).
 * Returns 0, or -EINVAL with a message (no format for a writable disk,
 * unknown format, empty path...).
 */
int xb_image_spec(const char *params, const char *format, bool readonly,
		  const char *default_fmt, const char **fmt, char *path, size_t pathlen,
		  char *err, size_t errlen);

/* Reads one key relative to the frontend directory ("protocol",
 * "queue-1/ring-ref0") into buf (at most len-1 bytes + NUL).  Returns 0,
 * -ENOENT if absent, -E2BIG if longer, another -errno on failure. */
typedef int (*xb_read_fn)(void *ctx, const char *key, char *buf, size_t len);

struct xb_limits {
	unsigned max_queues;      /* 1..ENGINE_MAX_QUEUES */
	unsigned max_ring_order;  /* 0..ENGINE_MAX_RING_ORDER */
	bool persistent;          /* we offered feature-persistent */
};

/*
 * Read and check the frontend's connection keys (Linux connect_ring()):
 * protocol (absent = native; unknown = error), feature-persistent,
 * multi-queue-num-queues (absent = 1; else 1..max), ring-page-order
 * (absent = 0; else <= max), then for each queue (flat keys for one queue,
 * queue-N/ for more) ring-ref (order 0) or every ring-ref0..2^order-1, and
 * event-channel.  Fills p->abi, ring_order, nr_queues, queue[], persistent.
 * Returns 0, or -EINVAL with a message naming the key.
 */
int xb_read_frontend(xb_read_fn rd, void *ctx, const struct xb_limits *lim,
		     struct engine_params *p, char *err, size_t errlen);

#endif
