/* imgtool_create.c - `vbd-img create`: a new empty raw or qcow2 image. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image_lock.h"
#include "imgtool.h"
#include "qcow2_create.h"

static void create_help(void)
{
	printf("Usage: %s create -f raw|qcow2 [-o OPTIONS] [-b BACKING -F FMT [-u]] FILE [SIZE]\n\n"
	       "Create FILE as an empty image of SIZE bytes (suffixes K, M, G, T).\n"
	       "An existing FILE is overwritten.\n\n"
	       "  -f FMT       format of the new image: raw or qcow2 (required)\n"
	       "  -o OPTIONS   qcow2 options, comma separated:\n"
	       "                 cluster_size=N    512 to 2M, a power of two (default 64K)\n"
	       "                 compat=0.10|1.1   qcow2 version 2 or 3 (default 1.1)\n"
	       "                 refcount_bits=N   1 to 64, a power of two (default 16;\n"
	       "                                   compat=0.10 allows only 16)\n"
	       "  -b BACKING   backing file (qcow2 only); a relative name is relative\n"
	       "               to FILE's directory, as in qemu-img\n"
	       "  -F FMT       the backing file's format: raw, qcow2 or qcow (required\n"
	       "               with -b: a backing format is never guessed)\n"
	       "  -u           do not open the backing file (SIZE is then required)\n"
	       "  -q           quiet: no 'Formatting' line\n"
	       "  -h, --help   this help\n\n"
	       "Without SIZE, a qcow2 image with a backing file gets the backing\n"
	       "file's size.  Exit status: 0 created, 1 error.\n", TOOL_NAME);
}

struct create_args {
	struct qcow2_create_opts q;
	bool any_qcow2_opt;
};

int qcow2_opt_parse(const char *cmd, const char *key, const char *val,
		    struct qcow2_create_opts *o)
{
	uint64_t v;

	if (!strcmp(key, "cluster_size")) {
		if (parse_size(val, &v) < 0 || v < 512 || v > (2u << 20) || (v & (v - 1)))
			return usage_err(cmd, "cluster_size '%s' must be a power of two "
					 "from 512 to 2M", val);
		o->cluster_bits = (unsigned)__builtin_ctzll(v);
	} else if (!strcmp(key, "compat")) {
		if (!strcmp(val, "0.10") || !strcmp(val, "v2"))
			o->version = 2;
		else if (!strcmp(val, "1.1") || !strcmp(val, "v3"))
			o->version = 3;
		else
			return usage_err(cmd, "compat '%s' must be 0.10 or 1.1", val);
	} else if (!strcmp(key, "refcount_bits")) {
		if (parse_uint(val, &v) < 0 || v < 1 || v > 64 || (v & (v - 1)))
			return usage_err(cmd, "refcount_bits '%s' must be 1, 2, 4, 8, 16, "
					 "32 or 64", val);
		o->refcount_order = (unsigned)__builtin_ctzll(v);
	} else {
		return usage_err(cmd, "unknown option '%s' (known: cluster_size, "
				 "compat, refcount_bits)", key);
	}
	return 0;
}

static int create_opt(const char *key, const char *val, void *arg)
{
	struct create_args *a = arg;

	a->any_qcow2_opt = true;
	return qcow2_opt_parse("create", key, val, &a->q);
}

/* The backing name as the image stores it, resolved like QEMU does: a
 * relative name is relative to the directory of the new image. */
static void backing_path(const char *image, const char *backing, char *out, size_t len)
{
	if (backing[0] == '/') {
		snprintf(out, len, "%s", backing);
		return;
	}
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", image);
	snprintf(out, len, "%s/%s", dirname(tmp), backing);
}

static int create_raw(const char *path, uint64_t size)
{
	char err[512];
	int fd = img_create_open(path, err, sizeof(err));
	if (fd < 0) {
		tool_err("%s", err);
		return EXIT_FAIL;
	}
	if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
		tool_err("%s: cannot set the size to %" PRIu64 ": %s", path, size,
			 strerror(errno));
		close(fd);
		return EXIT_FAIL;
	}
	if (close(fd) < 0) {
		tool_err("%s: close failed: %s", path, strerror(errno));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

int cmd_create(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct create_args a;
	const char *fmt = NULL, *backing = NULL, *backing_fmt = NULL;
	bool unsafe = false, quiet = false, have_size = false;
	uint64_t size = 0;
	int c, r;

	memset(&a, 0, sizeof(a));
	qcow2_create_opts_default(&a.q, 0);
	optind = 0;
	while ((c = getopt_long(argc, argv, "+f:o:b:F:uqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'o':
			r = parse_kv_list(optarg, create_opt, &a, "create");
			if (r)
				return r;
			break;
		case 'b': backing = optarg; break;
		case 'F': backing_fmt = optarg; break;
		case 'u': unsafe = true; break;
		case 'q': quiet = true; break;
		case 'h': create_help(); return EXIT_OK;
		default: return usage_err("create", "bad option");
		}
	}
	if (!fmt)
		return usage_err("create", "-f raw or -f qcow2 is required");
	if (strcmp(fmt, "raw") && strcmp(fmt, "qcow2"))
		return usage_err("create", "cannot create format '%s' (only raw and qcow2)", fmt);
	if (optind >= argc)
		return usage_err("create", "missing FILE");
	if (argc - optind > 2)
		return usage_err("create", "too many arguments");
	const char *path = argv[optind];
	if (argc - optind == 2) {
		if (parse_size(argv[optind + 1], &size) < 0)
			return usage_err("create", "invalid size '%s' (a number with an optional "
					 "K, M, G or T suffix)", argv[optind + 1]);
		have_size = true;
	}

	if (!strcmp(fmt, "raw")) {
		if (a.any_qcow2_opt || backing)
			return usage_err("create", "-o and -b apply to qcow2 only");
		if (!have_size)
			return usage_err("create", "missing SIZE");
		r = create_raw(path, size);
		if (r == EXIT_OK && !quiet)
			printf("Formatting '%s', fmt=raw size=%" PRIu64 "\n", path, size);
		return r;
	}

	if (backing_fmt && !backing)
		return usage_err("create", "-F needs -b BACKING");
	if (backing && !backing_fmt)
		return usage_err("create", "-b needs -F FMT, the backing file's format "
				 "(a backing format is never guessed)");
	if (backing_fmt && !format_known(backing_fmt))
		return usage_err("create", "unknown backing format '%s' (raw, qcow2 or qcow)",
				 backing_fmt);
	if (backing && !unsafe) {
		char bpath[PATH_MAX + 256];
		struct img *b;
		backing_path(path, backing, bpath, sizeof(bpath));
		if (tool_open(bpath, backing_fmt, IMG_RDONLY | IMG_NOBACKING, &b) < 0) {
			tool_err("%s: the backing file must be readable as %s (use -u to "
				 "create the image anyway)", path, backing_fmt);
			return EXIT_FAIL;
		}
		if (!have_size) {
			size = img_size(b);
			have_size = true;
		}
		img_close(b);
	}
	if (!have_size)
		return usage_err("create", "missing SIZE");
	if (size % 512)
		return usage_err("create", "qcow2 image size %" PRIu64 " must be a multiple "
				 "of 512 bytes", size);

	char err[512];
	a.q.size = size;
	a.q.backing_file = backing;
	a.q.backing_format = backing_fmt;
	r = qcow2_create(path, &a.q, err, sizeof(err));
	if (r < 0) {
		tool_err("%s", err);
		return EXIT_FAIL;
	}
	if (!quiet) {
		printf("Formatting '%s', fmt=qcow2 cluster_size=%u compat=%s refcount_bits=%u",
		       path, 1u << a.q.cluster_bits, qcow2_compat_name(a.q.version),
		       1u << a.q.refcount_order);
		if (backing)
			printf(" backing_file=%s backing_fmt=%s", backing, backing_fmt);
		printf(" size=%" PRIu64 "\n", size);
	}
	return EXIT_OK;
}
