/*
 * Fuzz target: open arbitrary bytes as an image (probed, and forced as each
 * format), read all over it, describe it, check it; then, as qcow2 opened
 * for repair, let `vbd-img check -r all` rebuild its refcounts and check
 * the result (after a rebuild the refcounts equal the references, so no
 * leak may remain).  Backing files are not
 * followed (IMG_NOBACKING), so an input cannot make the target read host
 * files.  Any outcome is fine except a crash, a hang or a leak.
 */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/image.h"
#include "fuzz.h"
#include "util/log.h"

static void exercise(struct img *img)
{
	static char buf[65536 + 512];
	struct img_extent ext;
	struct img_info info;
	struct img_check_result res;
	uint64_t size = img_size(img), off = 0;

	img_get_info(img, &info);
	/* Walk the extents, bounded so a huge virtual size stays quick. */
	for (int i = 0; i < 64 && off < size; i++) {
		if (img_block_status(img, off, size - off, &ext) < 0 || ext.length == 0)
			break;
		off += ext.length;
	}
	/* Reads at a few places: start, unaligned middle, the very end. */
	uint64_t at[] = { 0, size / 3 + 7, size > 4096 ? size - 4096 : 0, size / 2 };
	for (unsigned i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		size_t len = sizeof(buf);
		if (at[i] >= size)
			continue;
		if (len > size - at[i])
			len = (size_t)(size - at[i]);
		img_pread(img, buf, len, at[i]);
	}
	img_check(img, 0, &res);
}

/* img_check(IMG_FIX_LEAKS | IMG_FIX_ERRORS) on the writable memfd. */
static void repair(const char *path)
{
	struct img *img = NULL;
	struct img_check_result fixed, after;
	char err[256];

	if (img_open(path, "qcow2", IMG_REPAIR | IMG_NOBACKING, &img, err, sizeof(err)) < 0)
		return;
	if (img_check(img, IMG_FIX_LEAKS | IMG_FIX_ERRORS, &fixed) == 0 &&
	    fixed.corruptions_fixed && img_check(img, 0, &after) == 0 && !after.check_errors &&
	    after.leaks)
		__builtin_trap(); /* a rebuild left refcounts above the references */
	img_close(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const fmts[] = { NULL, "qcow2", "qcow", "raw" };
	char path[64], err[256];
	int fd;

	log_init("fuzz", VLOG_NONE, false); /* quiet: bad images are expected */
	fd = memfd_create("fuzz-image", 0);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	for (unsigned i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		struct img *img = NULL;
		if (img_open(path, fmts[i], IMG_RDONLY | IMG_NOBACKING, &img, err,
			     sizeof(err)) == 0) {
			exercise(img);
			img_close(img);
		}
	}
	repair(path);
	close(fd);
	return 0;
}
