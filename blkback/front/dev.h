/*
 * dev.h - vbd-front's runtime: guest memory, one device's connection and
 * its queues, and the units that drive them.
 *
 *   guestmem.c   page allocator and grants over the simulated guest's memory
 *   handshake.c  frontend side of the XenBus handshake (connect, close)
 *   queue.c      one ring's I/O loop (a thread per queue), verify, stats
 *   evil.c       misbehaving requests for the backend's hardening tests
 *   report.c     text and JSON reports
 */
#ifndef VBDFS_FRONT_DEV_H
#define VBDFS_FRONT_DEV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "front.h"
#include "util/hist.h"

struct sim_guest;
struct xs_handle;

/* ---- options (filled by vbd-front.c) ---- */

struct vf_opts {
	const char *sim_dir;
	uint16_t domid;
	const char *name;
	bool wait, list, json, verify, fill, filled, unaligned;
	unsigned ring_order;          /* wanted; capped by the backend */
	unsigned queues;              /* wanted; capped by the backend */
	enum blkif_abi abi;
	bool persistent;
	unsigned indirect;            /* wanted max segments; 0 = no INDIRECT */
	bool no_flush, no_discard;
	enum vf_pattern_kind pattern;
	enum vf_rw rw;
	unsigned read_pct;
	uint64_t bs;
	unsigned qd;
	uint64_t duration_ns, bytes, ios; /* 0 = not set */
	uint64_t offset, size;        /* region; size 0 = to the end */
	unsigned flush_every, discard_every;
	uint64_t seed;
	unsigned reconnect;           /* extra connect/IO/close cycles */
	uint64_t timeout_ns;          /* for the backend to answer/act */
	const char *evil;             /* NULL or a mode name */
	uint64_t mem_bytes;
};

/* ---- guest memory (guestmem.c) ---- */

struct vf_mem;
struct vf_mem *vf_mem_new(struct sim_guest *g);
void vf_mem_free(struct vf_mem *m);
/* n contiguous frames; -ENOMEM when the guest's memory is exhausted. */
int vf_mem_alloc(struct vf_mem *m, unsigned n, uint32_t *first);
void vf_mem_release(struct vf_mem *m, uint32_t first, unsigned n);
void *vf_mem_page(struct vf_mem *m, uint32_t frame);
/* Thread-safe grant calls (the simulator's guest API may not be). */
int vf_grant(struct vf_mem *m, uint16_t to, uint32_t frame, bool readonly);
int vf_end_grant(struct vf_mem *m, uint32_t gref);
void vf_grant_raw(struct vf_mem *m, uint32_t gref, uint16_t flags, uint16_t domid, uint32_t frame);
struct sim_guest *vf_mem_guest(struct vf_mem *m);
struct vf_dev;
/* End a grant at teardown; one the backend still has mapped is leaked,
 * counted in grant_leaks and named in a warning (what: "ring", "data"...). */
void vf_end_or_leak(struct vf_dev *d, uint32_t gref, const char *what);

/* ---- per-device statistics ---- */

struct vf_stats {
	struct hist lat[VF_NR_OPS];          /* ns, per completed I/O */
	_Atomic uint64_t ios[VF_NR_OPS], bytes[VF_NR_OPS];
	_Atomic uint64_t reqs;               /* blkif requests sent */
	_Atomic uint64_t st_error, st_eopnotsupp, st_other; /* responses by status */
	_Atomic uint64_t bad_responses;      /* failed validation */
	_Atomic uint64_t notify_out, notify_in;
	_Atomic uint64_t verified_sectors, mismatches;
	_Atomic uint64_t grant_leaks;        /* end_grant refused after a response */
};

/* ---- one ring ---- */

struct vf_io;

/* One request slot (id = index); pending state and expected operation are
 * in vf_queue.states[] so vf_rsp_validate() can check responses. */
struct vf_shadow {
	struct vf_io *io;
	uint8_t op;               /* VF_OP_* of the I/O */
	uint64_t off;             /* this request's data: disk byte offset */
	unsigned nsect, pgoff;
	unsigned nr_pages, nr_ind;
	uint32_t data_frame;      /* max_segs contiguous data pages */
	uint32_t ind_frame;       /* indirect pages, contiguous (0 = none) */
	grant_ref_t *grefs;       /* per-request grants, or persistent ones (0 = none yet) */
	grant_ref_t ind_grefs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
	unsigned next_free;
};

struct vf_dev;

struct vf_queue {
	struct vf_dev *dev;
	unsigned index;
	struct vf_ring ring;
	uint32_t ring_frame;      /* first of 1 << ring_order contiguous frames */
	grant_ref_t ring_ref[16];
	int port;
	int evfd;
	struct vf_shadow *shadow;
	struct vf_shadow_state *states; /* [nshadow]: pending, expected op */
	unsigned nshadow, free_head, nfree, nind_pages;
	uint64_t slice_start, slice_len; /* this queue's part of the region */
	pthread_t thread;
	bool thread_started;
	bool broken;              /* the backend broke the protocol, or stopped */
	char why[160];            /* why the queue stopped early */
};

/* ---- one device ---- */

struct vf_dev {
	uint32_t devid;
	char vdev[32];
	char fe[96], be[160];     /* frontend and backend xenstore dirs */
	uint16_t be_domid;
	/* negotiated */
	unsigned ring_order, nr_queues;
	enum blkif_abi abi;
	bool persistent;          /* both sides */
	unsigned max_segs;        /* per request: 11, or the indirect limit */
	unsigned indirect;        /* 0 = INDIRECT not used */
	bool flush, barrier, discard, discard_secure;
	uint8_t flush_op;         /* BLKIF_OP_FLUSH_DISKCACHE or WRITE_BARRIER */
	uint32_t discard_gran, discard_align;
	uint64_t sectors;         /* 512-byte units */
	unsigned sector_size, phys_sector_size;
	unsigned info;
	/* backend limits as read */
	unsigned be_max_order, be_max_queues, be_max_indirect;
	bool be_persistent;

	struct vf_queue queue[16];
	struct vf_mem *mem;
	const struct vf_opts *opts;

	/* verify: generation of each 512-byte sector of the region (0 = unknown) */
	uint64_t region_start, region_len;   /* bytes */
	uint32_t *gens;
	_Atomic uint32_t next_gen;

	atomic_bool backend_gone; /* backend left Connected during I/O */
	bool connected;
	struct xs_handle *xs;
	struct vf_stats stats;
	uint64_t elapsed_ns;      /* of the workload phases */
	char error[256];          /* a fatal problem for this device */
	/* What an --evil run leaves for vf_dev_close: with persistent grants
	 * the backend may keep any gref it saw mapped, so (as blkfront) those
	 * are ended, and the scratch frames under them released, only once
	 * the backend has closed. */
	uint32_t evil_held[256];
	unsigned evil_nheld;
	uint32_t evil_frame, evil_ind_frame; /* 0: none */
};

/* ---- handshake.c ---- */

/* Read the device's frontend/backend nodes (devid from the directory name). */
int vf_dev_probe(struct xs_handle *xs, struct vf_dev *d, uint16_t domid, const char *devname);
/* The whole connect sequence; on failure d->error says why. */
int vf_dev_connect(struct xs_handle *xs, struct vf_dev *d);
/* Closing -> Closed like blkfront; release grants and rings. */
void vf_dev_close(struct xs_handle *xs, struct vf_dev *d);
/* Grant queue q's ring pages and allocate its event channel / undo it. */
int vf_queue_ring_up(struct vf_dev *d, struct vf_queue *q);
void vf_queue_ring_down(struct vf_dev *d, struct vf_queue *q);
/* Read the backend's state (-1 if unreadable). */
int vf_read_state(struct xs_handle *xs, const char *dir);
/* In a want mask: the state node is absent (the device was removed). */
#define VF_STATE_GONE (1u << 31)
/* Wait until dir/state satisfies want (a bitmask of 1 << state) or the
 * timeout passes (or, if interruptible, vf_stop is set); returns the state
 * seen last. */
int vf_wait_state(struct xs_handle *xs, const char *dir, unsigned want_mask, uint64_t timeout_ns,
		  bool interruptible);

/* ---- queue.c ---- */

/* Allocate shadows and data pages after the connection is up. */
int vf_queue_setup(struct vf_queue *q);
void vf_queue_teardown(struct vf_queue *q);
/* Run every workload phase on all queues of d (threads); returns when done. */
void vf_dev_run(struct vf_dev *d);
/* Thread body, exposed for tests. */
void *vf_queue_main(void *arg);
/* Send one request synchronously and wait for its response (evil modes).
 * Returns the status, or -1000 on timeout / protocol violation. */
int vf_queue_sync(struct vf_queue *q, struct blkif_req *req, uint64_t timeout_ns);
/* Notify the backend on this queue's channel. */
void vf_queue_kick(struct vf_queue *q);

extern atomic_bool vf_stop; /* set by SIGINT/SIGTERM */

/* ---- evil.c ---- */

/* Run an --evil mode against d; prints per-mode results; 0 if the backend
 * behaved as required. */
int vf_evil_run(struct vf_dev *d, const char *mode);
bool vf_evil_mode_known(const char *mode);
/* After the backend closed: end the grants an --evil run held (a grant
 * that cannot be ended counts in stats.grant_leaks) and free its frames. */
void vf_evil_release(struct vf_dev *d);

/* ---- report.c ---- */

/* One device; with json, an array element (a comma first unless first). */
void vf_report_list(const struct vf_dev *d, bool json, bool first);
void vf_report_dev(struct vf_dev *d, bool json, bool first);
/* True if the device finished without errors. */
bool vf_dev_ok(struct vf_dev *d);

#endif
