/*
 * engine.h - the blkif request engine of one connected device.
 *
 * xenbus.c negotiates with the frontend (rings, ABI, queues, persistent
 * grants) and then hands the result to engine_start(); the engine maps the
 * rings, binds the event channels and serves requests with one thread per
 * queue until engine_stop().  The engine knows nothing of xenstore.
 *
 * Per ring: copy each request once (abi.h), validate it (every rule of
 * /work/shared/research/blkif-anchors.md section 3), run it against the
 * image with requests of one ring in flight concurrently, answer with
 * responses batched by RING_PUSH_RESPONSES_AND_CHECK_NOTIFY semantics, and
 * count everything in the device's dev_stats and trace.
 *
 * How (engine.c lifecycle, queue.c threads, io.c image I/O, request.c the
 * validation rules, ring.c the ring indexes, pgrant.c persistent grants):
 *  - per queue one consumer thread (intake, validation, barriers) and
 *    2-4 worker threads (one per CPU) running the image I/O; small reads
 *    found in the page cache the consumer serves itself (no hand-off);
 *    completions are published in batches, notifying only when the
 *    frontend asked;
 *  - a request pool of 32 x ring pages per queue, allocated at start with
 *    its bounce buffers (address space reserved for max-size requests,
 *    backed by memory as requests actually use it): nothing is allocated
 *    per request.  The bounce memory a queue may have resident is bounded
 *    by ENGINE_BOUNCE_BUDGET (below), and is returned to the system when
 *    the queue goes idle;
 *  - data moves by grant copy through the bounce buffer, or, with
 *    persistent grants, straight between the image and the mapped guest
 *    pages;
 *  - the initial size is img_size(img); engine_set_sectors() changes it.
 * bench/engine.sh measures it against a plain pread loop.
 */
#ifndef VBDFS_ENGINE_H
#define VBDFS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "abi.h"
#include "hv.h"

struct img;
struct dev_stats;
struct trace;
struct engine;

#define ENGINE_MAX_QUEUES 16
#define ENGINE_MAX_RING_ORDER 4     /* 16 pages */
#define ENGINE_DEFAULT_INDIRECT 256 /* feature-max-indirect-segments */

/*
 * Bounce memory per queue (issue 6: a guest must not make us allocate
 * without bound).  The bytes of bounce buffer a queue's requests have
 * touched since the last release stay under this budget: a request that
 * would go over it waits (counted in out_of_reqs) until everything in
 * flight completed, then the touched pages are released (madvise) and it
 * goes on alone.  A request larger than the whole budget (at most
 * max-indirect-segments x 4 KiB) thus still runs, alone.  Segments served
 * in place through persistent grants use no bounce memory and are not
 * counted.  The pages are also released whenever the queue goes idle.
 * So the bounce memory of a device is at most
 * queues x max(ENGINE_BOUNCE_BUDGET, largest request).
 */
#define ENGINE_BOUNCE_BUDGET (32u << 20) /* bytes per queue */

struct engine_queue {
	hv_gref_t ring_ref[1u << ENGINE_MAX_RING_ORDER];
	uint32_t evtchn;              /* the frontend's port */
};

struct engine_params {
	struct hv *hv;
	uint16_t domid;
	uint32_t devid;
	enum blkif_abi abi;
	unsigned ring_order;          /* 0..ENGINE_MAX_RING_ORDER */
	unsigned nr_queues;           /* 1..ENGINE_MAX_QUEUES */
	struct engine_queue queue[ENGINE_MAX_QUEUES];
	bool persistent;              /* both sides set feature-persistent */
	unsigned max_indirect_segs;   /* what was advertised; 0 = no INDIRECT */
	bool feature_flush, feature_barrier, feature_discard, discard_secure;
	uint32_t discard_granularity; /* bytes */
	unsigned sector_size;         /* logical: 512 or 4096 */
	bool readonly;
	struct img *img;
	struct dev_stats *stats;
	struct trace *trace;
};

/* Map rings, bind channels, start the queue threads.  NULL + message on
 * failure (nothing left mapped or bound). */
struct engine *engine_start(const struct engine_params *p, char *err, size_t errlen);

/* Stop taking requests, let in-flight ones finish (their responses are
 * still delivered if the ring is alive), flush the image, unmap, unbind,
 * join threads.  Idempotent with respect to the device: safe after the
 * guest died. */
void engine_stop(struct engine *e);

/* Online resize: new size in 512-byte sectors; later requests are checked
 * against it. */
void engine_set_sectors(struct engine *e, uint64_t sectors);

/* True once a queue stopped serving because the frontend broke the ring
 * protocol (e.g. req_prod too far ahead). */
bool engine_broken(struct engine *e);

/* Negotiated facts for /vbd/<dev>/info. */
size_t engine_format_info(struct engine *e, char *buf, size_t len, bool json);

#endif
