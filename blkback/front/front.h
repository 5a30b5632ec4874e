/*
 * front.h - the pure building blocks of vbd-front, the simulated guest.
 *
 * Nothing here touches xenstore, the simulator or threads, so each piece is
 * unit tested on its own (t/350-t/359):
 *   - sizes and durations on the command line ("4k", "1G", "5s", "100ms");
 *   - a small deterministic PRNG (splitmix64);
 *   - verify patterns: every 512-byte sector written gets contents derived
 *     from (disk offset, generation, seed), so a read can be checked against
 *     what was last written there, and a misdirected write names its origin;
 *   - the workload generator (seq/rand, read/write/mix, flush/discard
 *     cadence) over a region;
 *   - request building: an I/O split into blkif requests of at most
 *     max_segs 4 KiB segments, direct (<= 11) or INDIRECT;
 *   - the frontend half of a blkif ring (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY,
 *     RING_FINAL_CHECK_FOR_RESPONSES) and response validation as Linux
 *     blkfront does it since 2021 (id in range and pending, operation
 *     matches).
 */
#ifndef VBDFS_FRONT_H
#define VBDFS_FRONT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blkback/abi.h"

#define VF_SECTOR 512u
#define VF_PAGE 4096u
#define VF_SECTORS_PER_PAGE 8u

/* ---- command line values (workload.c) ---- */

/* "4096", "4k", "1M", "2g", "1T" (binary units, optional trailing "b" or
 * "iB").  -EINVAL on junk or overflow. */
int vf_parse_size(const char *s, uint64_t *out);
/* "5", "5s", "100ms", "2m", "1h" -> nanoseconds.  -EINVAL on junk. */
int vf_parse_duration(const char *s, uint64_t *out_ns);

/* ---- PRNG (workload.c) ---- */

uint64_t vf_rng_next(uint64_t *state);
/* Uniform in [0, n); n > 0. */
uint64_t vf_rng_below(uint64_t *state, uint64_t n);
/* A well-mixed hash of a few values (splitmix64 finaliser). */
uint64_t vf_mix(uint64_t a, uint64_t b);

/* ---- verify patterns (pattern.c) ---- */

/* The generation --fill writes everywhere (so --filled can check it). */
#define VF_FILL_GEN 1u

/* Fill len bytes (a multiple of 512) that will sit at byte offset off of
 * the disk with the pattern of generation gen (>= 1). */
void vf_pattern_fill(void *buf, uint64_t off, size_t len, uint32_t gen, uint64_t seed);

/* What a mismatching sector held instead. */
struct vf_mismatch {
	uint64_t off;          /* disk byte offset of the bad sector */
	uint32_t want_gen;
	bool found_pattern;    /* the sector holds some vbd-front pattern... */
	uint64_t found_off;    /* ...written for this offset */
	uint32_t found_gen;    /* ...and generation */
	bool found_zero;       /* the sector is all zeroes */
};

/* Check len bytes read from offset off against generations gens[] (one per
 * 512-byte sector; 0 = unknown, not checked).  Returns the number of bad
 * sectors; the first is described in *mm (if mm != NULL). */
unsigned vf_pattern_check(const void *buf, uint64_t off, size_t len, const uint32_t *gens,
			  uint64_t seed, struct vf_mismatch *mm);

/* ---- workload (workload.c) ---- */

enum vf_pattern_kind { VF_SEQ, VF_RAND };
enum vf_rw { VF_RW_READ, VF_RW_WRITE, VF_RW_MIX };

/* One I/O as an application would issue it. */
enum vf_op { VF_OP_READ, VF_OP_WRITE, VF_OP_FLUSH, VF_OP_DISCARD, VF_NR_OPS };

struct vf_io_desc {
	enum vf_op op;
	uint64_t off;   /* bytes; 0 for FLUSH */
	uint64_t len;   /* bytes; 0 for FLUSH */
};

struct vf_workload {
	enum vf_pattern_kind pattern;
	enum vf_rw rw;
	unsigned read_pct;       /* VF_RW_MIX: percentage of reads */
	uint64_t bs;             /* bytes, multiple of align */
	uint64_t start, len;     /* region in bytes, start aligned */
	uint64_t align;          /* offsets/lengths multiple of this (sector size) */
	uint64_t discard_align;  /* discards rounded to this (granularity) */
	unsigned flush_every;    /* a FLUSH after every N data I/Os; 0 = never */
	unsigned discard_every;  /* a DISCARD instead of every Nth data I/O */
	/* state */
	uint64_t rng;
	uint64_t pos;            /* VF_SEQ: next offset relative to start */
	uint64_t issued;         /* data I/Os generated */
	bool flush_due;
};

/* Set up; -EINVAL with a message in err if the parameters don't fit. */
int vf_workload_init(struct vf_workload *w, uint64_t seed, char *err, size_t errlen);
/* The next I/O (never fails; the caller decides when to stop). */
void vf_workload_next(struct vf_workload *w, struct vf_io_desc *io);
const char *vf_op_name(enum vf_op op);

/* ---- request building (request.c) ---- */

/* Sectors one request can carry when its data starts pgoff sectors into its
 * first page and it may use max_segs segments. */
static inline unsigned vf_req_capacity(unsigned max_segs, unsigned pgoff)
{
	return max_segs * VF_SECTORS_PER_PAGE - pgoff;
}

/* Number of requests an I/O of nsect sectors is split into when each
 * request has max_segs segments and the data starts pgoff sectors into the
 * first page (later requests start on a page boundary). */
unsigned vf_split_count(uint64_t nsect, unsigned max_segs, unsigned pgoff);

/* Segments describing nsect sectors starting pgoff sectors into the first
 * of consecutive pages whose grants are grefs[]: returns the count. */
unsigned vf_build_segments(struct blkif_request_segment *segs, unsigned pgoff, unsigned nsect,
			   const grant_ref_t *grefs);

/* Encode segments into an indirect page (4 KiB, little endian, 8 bytes an
 * entry: gref, first_sect, last_sect, padding).  n <= 512. */
void vf_put_indirect(void *page, const struct blkif_request_segment *segs, unsigned n);
/* Indirect pages needed for n segments. */
static inline unsigned vf_indirect_pages(unsigned n)
{
	return (n + (unsigned)BLKIF_SEGS_PER_INDIRECT_PAGE - 1) / (unsigned)BLKIF_SEGS_PER_INDIRECT_PAGE;
}

/* ---- ring, frontend side (ring.c) ---- */

struct vf_ring {
	void *sring;             /* the shared pages, contiguous */
	enum blkif_abi abi;
	unsigned size;           /* slots, a power of two */
	uint32_t req_prod_pvt;
	uint32_t rsp_cons;
};

/* SHARED_RING_INIT + FRONT_RING_INIT over nr_pages pages at sring. */
void vf_ring_init(struct vf_ring *r, void *sring, unsigned nr_pages, enum blkif_abi abi);
/* Slots a new request may use now. */
unsigned vf_ring_free(const struct vf_ring *r);
/* Encode a request into the next private slot (not yet visible). */
void vf_ring_put(struct vf_ring *r, const struct blkif_req *req);
/* Publish queued requests; true if the backend must be notified. */
bool vf_ring_push(struct vf_ring *r);

/* One response taken off the ring. */
struct vf_rsp {
	uint64_t id;
	uint8_t operation;
	int16_t status;
};
/* Take up to max responses.  Returns the count, or -EPROTO if the backend
 * published more responses than could be outstanding (rsp_prod bogus). */
int vf_ring_take(struct vf_ring *r, struct vf_rsp *out, unsigned max);
/* RING_FINAL_CHECK_FOR_RESPONSES: re-arm rsp_event; true if more arrived. */
bool vf_ring_final_check(struct vf_ring *r);

/* Raw header access (evil modes). */
void vf_ring_set_req_prod(struct vf_ring *r, uint32_t v);
uint32_t vf_ring_rsp_prod(const struct vf_ring *r);

/* ---- response validation (ring.c) ---- */

/* Per ring: which ids are outstanding and with what operation. */
struct vf_shadow_state {
	bool pending;
	uint8_t operation;       /* the op a response must carry (indirect_op for INDIRECT) */
};

enum vf_rsp_check {
	VF_RSP_OK,
	VF_RSP_BAD_ID,           /* id >= number of shadow entries */
	VF_RSP_NOT_PENDING,      /* id known but no request outstanding */
	VF_RSP_BAD_OP,           /* operation differs from the request's */
};

/* Validate rsp against shadows[0..n) (Linux blkfront, 2021). */
enum vf_rsp_check vf_rsp_validate(const struct vf_shadow_state *shadows, unsigned n,
				  const struct vf_rsp *rsp);
const char *vf_rsp_check_name(enum vf_rsp_check c);

#endif
