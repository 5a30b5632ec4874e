/*
 * request.c - splitting I/Os into blkif requests and describing their data
 * pages as segments (direct, or in indirect pages).
 */
#include "front.h"

#include <string.h>

#include "util/endian.h"

unsigned vf_split_count(uint64_t nsect, unsigned max_segs, unsigned pgoff)
{
	uint64_t first = vf_req_capacity(max_segs, pgoff);
	uint64_t full = (uint64_t)max_segs * VF_SECTORS_PER_PAGE;

	if (nsect <= first)
		return 1;
	return (unsigned)(1 + (nsect - first + full - 1) / full);
}

unsigned vf_build_segments(struct blkif_request_segment *segs, unsigned pgoff, unsigned nsect,
			   const grant_ref_t *grefs)
{
	unsigned n = 0, first = pgoff;

	while (nsect) {
		unsigned take = VF_SECTORS_PER_PAGE - first;

		if (take > nsect)
			take = nsect;
		segs[n].gref = grefs[n];
		segs[n].first_sect = (uint8_t)first;
		segs[n].last_sect = (uint8_t)(first + take - 1);
		nsect -= take;
		first = 0;
		n++;
	}
	return n;
}

void vf_put_indirect(void *page, const struct blkif_request_segment *segs, unsigned n)
{
	unsigned char *p = page;

	for (unsigned i = 0; i < n; i++, p += sizeof(struct blkif_request_segment)) {
		put_le32(p, segs[i].gref);
		p[4] = segs[i].first_sect;
		p[5] = segs[i].last_sect;
		p[6] = p[7] = 0;
	}
}
