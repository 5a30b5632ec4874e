/* request.c - validation of one copied blkif request; see request.h. */
#include "request.h"

#include <stddef.h>

#include "util/endian.h"

#define SECTORS_PER_PAGE 8u /* 512-byte sectors in a 4 KiB granted page */

static struct req_verdict verdict(int16_t status, const char *reason)
{
	return (struct req_verdict){ .status = status, .reason = reason };
}

static const struct req_verdict OKAY = { BLKIF_RSP_OKAY, NULL };

uint8_t req_response_op(const struct blkif_req *r)
{
	return r->operation == BLKIF_OP_INDIRECT ? r->indirect_op : r->operation;
}

uint8_t req_data_op(const struct blkif_req *r)
{
	switch (r->operation) {
	case BLKIF_OP_INDIRECT:
		return r->indirect_op;
	case BLKIF_OP_WRITE_BARRIER:
	case BLKIF_OP_FLUSH_DISKCACHE:
		return r->nr_segments ? BLKIF_OP_WRITE : r->operation;
	default:
		return r->operation;
	}
}

unsigned req_indirect_pages(unsigned nr_segments)
{
	return (unsigned)((nr_segments + BLKIF_SEGS_PER_INDIRECT_PAGE - 1) /
			  BLKIF_SEGS_PER_INDIRECT_PAGE);
}

/* 512-byte sectors per logical sector (rule 12); 1 for anything odd. */
static uint64_t sectors_per_block(const struct req_limits *lim)
{
	return lim->sector_size > 512 ? lim->sector_size / 512 : 1;
}

/* rule 7: READ and WRITE always; the others only if advertised. */
static struct req_verdict check_op(const struct blkif_req *r, const struct req_limits *lim)
{
	switch (r->operation) {
	case BLKIF_OP_READ:
	case BLKIF_OP_WRITE:
		return OKAY;
	case BLKIF_OP_WRITE_BARRIER:
		return lim->barrier ? OKAY : verdict(BLKIF_RSP_EOPNOTSUPP, "barrier not advertised");
	case BLKIF_OP_FLUSH_DISKCACHE:
		return lim->flush ? OKAY : verdict(BLKIF_RSP_EOPNOTSUPP, "flush not advertised");
	case BLKIF_OP_DISCARD:
		return lim->discard ? OKAY : verdict(BLKIF_RSP_EOPNOTSUPP, "discard not advertised");
	case BLKIF_OP_INDIRECT:
		if (!lim->max_indirect_segs)
			return verdict(BLKIF_RSP_EOPNOTSUPP, "indirect not advertised");
		/* rule 9: only READ or WRITE may be indirect */
		if (r->indirect_op != BLKIF_OP_READ && r->indirect_op != BLKIF_OP_WRITE)
			return verdict(BLKIF_RSP_ERROR, "invalid indirect operation");
		return OKAY;
	default: /* including BLKIF_OP_RESERVED_1 */
		return verdict(BLKIF_RSP_EOPNOTSUPP, "unknown operation");
	}
}

/* rule 8: segment counts per operation. */
static struct req_verdict check_nr_segments(const struct blkif_req *r,
					    const struct req_limits *lim)
{
	unsigned n = r->nr_segments;

	switch (r->operation) {
	case BLKIF_OP_READ:
	case BLKIF_OP_WRITE:
		if (n < 1 || n > BLKIF_MAX_SEGMENTS_PER_REQUEST)
			return verdict(BLKIF_RSP_ERROR, "bad number of segments");
		return OKAY;
	case BLKIF_OP_WRITE_BARRIER:
	case BLKIF_OP_FLUSH_DISKCACHE: /* 0 = a pure flush */
		if (n > BLKIF_MAX_SEGMENTS_PER_REQUEST)
			return verdict(BLKIF_RSP_ERROR, "bad number of segments");
		return OKAY;
	case BLKIF_OP_INDIRECT:
		if (n < 1 || n > lim->max_indirect_segs)
			return verdict(BLKIF_RSP_ERROR, "bad number of indirect segments");
		if (req_indirect_pages(n) > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST)
			return verdict(BLKIF_RSP_ERROR, "too many indirect pages");
		return OKAY;
	default:
		return OKAY;
	}
}

/* rule 14 (and 11, 12 for the range): a DISCARD request. */
static struct req_verdict check_discard(const struct blkif_req *r, const struct req_limits *lim,
					uint64_t live_sectors)
{
	uint64_t start = r->sector_number, n = r->nr_sectors, end = start + n;
	uint64_t spb = sectors_per_block(lim);

	if ((r->discard_flag & BLKIF_DISCARD_SECURE) && !lim->discard_secure)
		return verdict(BLKIF_RSP_EOPNOTSUPP, "secure discard not advertised");
	if (n > (uint64_t)INT64_MAX / 512)
		return verdict(BLKIF_RSP_ERROR, "discard length too large");
	if (end < start) /* rule 11: no wrap */
		return verdict(BLKIF_RSP_ERROR, "discard range wraps");
	if (end > live_sectors)
		return verdict(BLKIF_RSP_ERROR, "discard beyond end of device");
	if (start % spb || n % spb) /* rule 12 */
		return verdict(BLKIF_RSP_ERROR, "misaligned discard");
	/* A start or length that is not a multiple of discard-granularity is
	 * valid: Linux 6.1 blkfront sends such discards (seen in the xenlab
	 * under fstrim on a qcow2 disk with 64 KiB granularity), and
	 * blkif.h does not forbid them.  Discard is advisory: the image
	 * layer keeps the unaligned edges' data. */
	return OKAY;
}

struct req_verdict req_check_header(const struct blkif_req *r, const struct req_limits *lim,
				    uint64_t live_sectors)
{
	struct req_verdict v = check_op(r, lim);
	uint8_t data_op = req_data_op(r);

	if (v.status != BLKIF_RSP_OKAY)
		return v;
	/* rule 13: nothing may change a read-only device */
	if (lim->readonly && (data_op == BLKIF_OP_WRITE || r->operation == BLKIF_OP_DISCARD))
		return verdict(BLKIF_RSP_ERROR, "write request on a read-only device");
	if (r->operation == BLKIF_OP_DISCARD)
		return check_discard(r, lim, live_sectors);
	v = check_nr_segments(r, lim);
	if (v.status != BLKIF_RSP_OKAY)
		return v;
	/* rule 12: a data transfer starts on a logical block boundary */
	if (r->nr_segments && r->sector_number % sectors_per_block(lim))
		return verdict(BLKIF_RSP_ERROR, "misaligned I/O");
	return OKAY;
}

struct req_verdict req_check_segments(const struct blkif_request_segment *seg, unsigned n,
				      uint64_t sector_number, const struct req_limits *lim,
				      uint64_t live_sectors, uint64_t *sectors)
{
	uint64_t spb = sectors_per_block(lim), total = 0, end;

	for (unsigned i = 0; i < n; i++) {
		unsigned first = seg[i].first_sect, last = seg[i].last_sect;

		/* rule 10: inside one page, first <= last */
		if (first > last || last >= SECTORS_PER_PAGE)
			return verdict(BLKIF_RSP_ERROR, "bad segment sectors");
		/* rule 12: whole logical blocks */
		if (first % spb || (last - first + 1) % spb)
			return verdict(BLKIF_RSP_ERROR, "misaligned segment");
		total += last - first + 1;
	}
	/* rule 11: u64 end, no wrap, within the live size */
	end = sector_number + total;
	if (end < sector_number)
		return verdict(BLKIF_RSP_ERROR, "request range wraps");
	if (end > live_sectors)
		return verdict(BLKIF_RSP_ERROR, "access beyond end of device");
	*sectors = total;
	return OKAY;
}

void req_decode_indirect(const void *pages, unsigned n, struct blkif_request_segment *seg)
{
	const unsigned char *p = pages;

	/* rule 10: each entry read once, from our private copy */
	for (unsigned i = 0; i < n; i++, p += sizeof(struct blkif_request_segment)) {
		seg[i].gref = get_le32(p);
		seg[i].first_sect = p[4];
		seg[i].last_sect = p[5];
	}
}
