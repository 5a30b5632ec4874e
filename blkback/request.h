/*
 * request.h - validation of one guest blkif request, as pure functions.
 *
 * The engine copies a request off the ring once (abi.h) and asks these
 * functions whether the private copy may reach the image.  Every rule of
 * /work/shared/research/blkif-anchors.md section 3 that concerns one
 * request is enforced here; the comment "rule N" marks each place.  The
 * others live where they act: rules 1-6 in ring.c and queue.c, 15-16 in
 * io.c and pgrant.c, 17-19 and 23 in queue.c, 20-22 and 24 in engine.c.
 *
 * Sector units are always 512 bytes; sector_size only imposes alignment.
 */
#ifndef VBDFS_REQUEST_H
#define VBDFS_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "abi.h"

/* What the backend advertised for this device. */
struct req_limits {
	bool flush, barrier, discard, discard_secure, readonly;
	unsigned max_indirect_segs;   /* 0: INDIRECT not advertised */
	unsigned sector_size;         /* 512 or 4096 (a power of two >= 512) */
	uint32_t discard_granularity; /* bytes; 0 or 1: any 512-byte sector */
};

/* The verdict on a request. */
struct req_verdict {
	int16_t status;      /* BLKIF_RSP_OKAY, _ERROR or _EOPNOTSUPP */
	const char *reason;  /* for the log when status != OKAY */
};

/* The operation that goes into the response: indirect_op for INDIRECT
 * (rule 17), the request's own otherwise. */
uint8_t req_response_op(const struct blkif_req *r);

/* The data operation: READ or WRITE for READ/WRITE/INDIRECT; WRITE for a
 * FLUSH or BARRIER carrying data; the operation itself otherwise. */
uint8_t req_data_op(const struct blkif_req *r);

/* Number of indirect pages an INDIRECT request of n segments uses. */
unsigned req_indirect_pages(unsigned nr_segments);

/*
 * Everything that can be checked on the copied request itself: the
 * operation against what was advertised, segment counts, read-only
 * devices, discard ranges and flags, sector alignment.  live_sectors is
 * the device size now, in 512-byte sectors.
 */
struct req_verdict req_check_header(const struct blkif_req *r, const struct req_limits *lim,
				    uint64_t live_sectors);

/*
 * The segments of a READ/WRITE (direct: r->seg; INDIRECT: the entries read
 * once from the indirect pages).  Checks each segment and the resulting
 * range against the device.  *sectors gets the request's length in
 * 512-byte sectors when OKAY.
 */
struct req_verdict req_check_segments(const struct blkif_request_segment *seg, unsigned n,
				      uint64_t sector_number, const struct req_limits *lim,
				      uint64_t live_sectors, uint64_t *sectors);

/* Decode n indirect segment entries (8 bytes each, little endian) from a
 * private copy of the indirect pages; each entry is read once (rule 10). */
void req_decode_indirect(const void *pages, unsigned n, struct blkif_request_segment *seg);

#endif
