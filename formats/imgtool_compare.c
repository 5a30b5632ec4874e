/* imgtool_compare.c - `vbd-img compare`: do two images hold the same bytes? */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "imgtool.h"

#define CMP_SAME  0
#define CMP_DIFF  1
#define CMP_ERROR 2
#define CMP_CHUNK (1u << 20)

static void compare_help(void)
{
	printf("Usage: %s compare [-f FMT] [-F FMT] [-s] [-U] A B\n\n"
	       "Compare the virtual disks of images A and B byte by byte, skipping\n"
	       "ranges that both images know to read as zeros.  When the sizes differ,\n"
	       "the extra part of the larger image must be zeros (unless -s).\n\n"
	       "  -f FMT       format of A; -F FMT  format of B (raw, qcow2, qcow);\n"
	       "               each is probed when absent (both are opened read-only)\n"
	       "  -s           strict: images of different sizes differ\n"
	       "  -q           quiet: print nothing, only set the exit status\n"
	       "  -U, --force-share  read them even if another process writes them\n"
	       "  -h, --help   this help\n\n"
	       "Exit status (as qemu-img compare): 0 identical content, 1 different\n"
	       "(the first differing offset is printed), 2 error.\n", TOOL_NAME);
}

/* First index where a and b differ; len if equal. */
static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
	size_t i = 0;
	/* memcmp in blocks to find the block, then bytes */
	while (i < len) {
		size_t n = len - i < 4096 ? len - i : 4096;
		if (memcmp(a + i, b + i, n)) {
			while (a[i] == b[i])
				i++;
			return i;
		}
		i += n;
	}
	return len;
}

static int status(struct img *img, const char *path, uint64_t off, uint64_t len,
		  struct img_extent *e)
{
	int r = img_block_status(img, off, len, e);
	if (r < 0 || e->length == 0 || e->offset != off) {
		tool_err("%s: cannot get the allocation at offset %" PRIu64 ": %s", path, off,
			 r < 0 ? strerror(-r) : "bad extent");
		return -1;
	}
	if (e->length > len)
		e->length = len;
	return 0;
}

static int read_at(struct img *img, const char *path, void *buf, size_t len, uint64_t off)
{
	int r = img_pread(img, buf, len, off);
	if (r < 0) {
		tool_err("%s: read error at offset %" PRIu64 ": %s", path, off, strerror(-r));
		return -1;
	}
	return 0;
}

/* The common part [0, size). */
static int compare_common(struct img *a, const char *pa, struct img *b, const char *pb,
			  uint64_t size, uint8_t *ba, uint8_t *bb, uint64_t *diff_at)
{
	uint64_t off = 0;

	while (off < size) {
		uint64_t len = size - off < CMP_CHUNK ? size - off : CMP_CHUNK;
		struct img_extent ea, eb;
		if (status(a, pa, off, len, &ea) < 0 || status(b, pb, off, len, &eb) < 0)
			return CMP_ERROR;
		uint64_t n = ea.length < eb.length ? ea.length : eb.length;
		if (ea.type != IMG_EXT_DATA && eb.type != IMG_EXT_DATA) {
			off += n;
			continue;
		}
		if (read_at(a, pa, ba, n, off) < 0 || read_at(b, pb, bb, n, off) < 0)
			return CMP_ERROR;
		size_t d = first_diff(ba, bb, n);
		if (d < n) {
			*diff_at = off + d;
			return CMP_DIFF;
		}
		off += n;
	}
	return CMP_SAME;
}

/* The tail [from, size) of the larger image must read as zeros. */
static int check_zero_tail(struct img *img, const char *path, uint64_t from, uint64_t size,
			   uint8_t *buf, uint64_t *diff_at)
{
	uint64_t off = from;

	while (off < size) {
		uint64_t len = size - off < CMP_CHUNK ? size - off : CMP_CHUNK;
		struct img_extent e;
		if (status(img, path, off, len, &e) < 0)
			return CMP_ERROR;
		if (e.type == IMG_EXT_DATA) {
			if (read_at(img, path, buf, e.length, off) < 0)
				return CMP_ERROR;
			for (uint64_t i = 0; i < e.length; i++) {
				if (buf[i]) {
					*diff_at = off + i;
					return CMP_DIFF;
				}
			}
		}
		off += e.length;
	}
	return CMP_SAME;
}

int cmd_compare(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	const char *fa = NULL, *fb = NULL;
	bool strict = false, quiet = false, share = false;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+f:F:sqhU", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fa = optarg; break;
		case 'F': fb = optarg; break;
		case 's': strict = true; break;
		case 'q': quiet = true; break;
		case 'U': share = true; break;
		case 'h': compare_help(); return CMP_SAME;
		default: usage_err("compare", "bad option"); return CMP_ERROR;
		}
	}
	if (argc - optind != 2) {
		usage_err("compare", "need exactly two images, A and B");
		return CMP_ERROR;
	}
	if ((fa && !format_known(fa)) || (fb && !format_known(fb))) {
		usage_err("compare", "unknown format (raw, qcow2 or qcow)");
		return CMP_ERROR;
	}
	const char *pa = argv[optind], *pb = argv[optind + 1];
	struct img *a = NULL, *b = NULL;
	uint8_t *ba = NULL, *bb = NULL;
	int rc = CMP_ERROR;

	unsigned flags = IMG_RDONLY | (share ? IMG_FORCE_SHARE : 0);

	if (tool_open(pa, fa, flags, &a) < 0 || tool_open(pb, fb, flags, &b) < 0)
		goto out;
	ba = malloc(CMP_CHUNK);
	bb = malloc(CMP_CHUNK);
	if (!ba || !bb) {
		tool_err("out of memory");
		goto out;
	}
	uint64_t sa = img_size(a), sb = img_size(b), diff_at = 0;
	uint64_t common = sa < sb ? sa : sb;
	if (sa != sb) {
		if (!quiet)
			printf("Warning: Image size mismatch!\n");
		if (strict) {
			if (!quiet)
				printf("Strict mode: images differ in size (%" PRIu64 " and %"
				       PRIu64 " bytes)\n", sa, sb);
			rc = CMP_DIFF;
			goto out;
		}
	}
	rc = compare_common(a, pa, b, pb, common, ba, bb, &diff_at);
	if (rc == CMP_SAME && sa != sb)
		rc = sa > sb ? check_zero_tail(a, pa, common, sa, ba, &diff_at)
			     : check_zero_tail(b, pb, common, sb, bb, &diff_at);
	if (!quiet && rc == CMP_DIFF)
		printf("Content mismatch at offset %" PRIu64 "!\n", diff_at);
	if (!quiet && rc == CMP_SAME)
		printf("Images are identical.\n");
out:
	free(ba);
	free(bb);
	if (a)
		img_close(a);
	if (b)
		img_close(b);
	return rc;
}
