/* imgtool_map.c - `vbd-img map`: where the data of an image lives. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "imgtool.h"

#define MAP_MAX_DEPTH 64

static void map_help(void)
{
	printf("Usage: %s map [--json] [-U] [-f FMT] FILE\n\n"
	       "List the extents of FILE's virtual disk and where each one is stored,\n"
	       "in the forms of qemu-img map.  The image and its backing files are\n"
	       "opened read-only.\n\n"
	       "  -f FMT       raw, qcow2 or qcow; probed if absent\n"
	       "  --json       every extent as a JSON object with start, length,\n"
	       "               depth, present, zero, data, compressed and (for\n"
	       "               uncompressed data) offset: the host file offset\n"
	       "  -U, --force-share  read it even if another process writes it\n"
	       "  -h, --help   this help\n\n"
	       "The default form lists only the extents holding data: guest offset,\n"
	       "length, host offset ('compressed' for compressed clusters) and the\n"
	       "file of the layer holding it.  Exit status: 0 success, 1 error.\n",
	       TOOL_NAME);
}

struct run {
	struct img_extent e;
	bool valid;
};

/* Adjacent extents merge when they look the same and, for data, continue
 * in the host file. */
static bool can_merge(const struct img_extent *a, const struct img_extent *b)
{
	if (a->type != b->type || a->depth != b->depth || a->compressed != b->compressed)
		return false;
	if (a->type == IMG_EXT_DATA && !a->compressed)
		return a->host_offset + a->length == b->host_offset;
	return true;
}

static void emit_json(const struct img_extent *e, bool first)
{
	bool present = e->type != IMG_EXT_UNALLOCATED;
	printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %u, "
	       "\"present\": %s, \"zero\": %s, \"data\": %s, \"compressed\": %s",
	       first ? "[" : ",\n", e->offset, e->length, e->depth, present ? "true" : "false",
	       e->type == IMG_EXT_DATA ? "false" : "true",
	       e->type == IMG_EXT_DATA ? "true" : "false", e->compressed ? "true" : "false");
	if (e->type == IMG_EXT_DATA && !e->compressed)
		printf(", \"offset\": %" PRIu64, e->host_offset);
	printf("}");
}

static void emit_human(const struct img_extent *e, const char *const *names, unsigned n)
{
	char start[24], len[24], mapped[24];

	if (e->type != IMG_EXT_DATA)
		return;
	snprintf(start, sizeof(start), "%#" PRIx64, e->offset);
	snprintf(len, sizeof(len), "%#" PRIx64, e->length);
	if (e->compressed)
		snprintf(mapped, sizeof(mapped), "compressed");
	else
		snprintf(mapped, sizeof(mapped), "%#" PRIx64, e->host_offset);
	/* %#x prints 0 as "0", as qemu-img does */
	printf("%-16s%-16s%-16s%s\n", start, len, mapped, e->depth < n ? names[e->depth] : "");
}

int cmd_map(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, 'j' },
		{ "output", required_argument, NULL, 'O' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	const char *fmt = NULL;
	bool json = false, share = false;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+f:hU", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'j': json = true; break;
		case 'U': share = true; break;
		case 'O':
			if ((r = parse_output("map", optarg, &json)))
				return r;
			break;
		case 'h': map_help(); return EXIT_OK;
		default: return usage_err("map", "bad option");
		}
	}
	if ((r = check_file_operand("map", argc, fmt)))
		return r;

	const char *path = argv[optind];
	struct img *img;
	if (tool_open(path, fmt, IMG_RDONLY | (share ? IMG_FORCE_SHARE : 0), &img) < 0)
		return EXIT_FAIL;

	/* file names of the layers, by depth */
	const char *names[MAP_MAX_DEPTH];
	unsigned nlayers = 0;
	for (struct img *l = img; l && nlayers < MAP_MAX_DEPTH; nlayers++) {
		struct img_info in;
		img_get_info(l, &in);
		names[nlayers] = in.path;
		l = in.backing;
	}

	uint64_t size = img_size(img), off = 0;
	struct run cur = { .valid = false };
	bool first = true;
	int rc = EXIT_OK;

	if (!json)
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
	while (off < size) {
		struct img_extent e;
		r = img_block_status(img, off, size - off, &e);
		if (r < 0 || e.length == 0 || e.offset != off || e.length > size - off) {
			tool_err("%s: cannot get the allocation at offset %" PRIu64 ": %s", path, off,
				 r < 0 ? strerror(-r) : "driver returned a bad extent");
			rc = EXIT_FAIL;
			break;
		}
		if (cur.valid && can_merge(&cur.e, &e) && cur.e.offset + cur.e.length == e.offset) {
			cur.e.length += e.length;
		} else {
			if (cur.valid) {
				if (json)
					emit_json(&cur.e, first);
				else
					emit_human(&cur.e, names, nlayers);
				first = false;
			}
			cur.e = e;
			cur.valid = true;
		}
		off += e.length;
	}
	if (rc == EXIT_OK && cur.valid) {
		if (json)
			emit_json(&cur.e, first);
		else
			emit_human(&cur.e, names, nlayers);
		first = false;
	}
	if (json)
		printf(first ? "[]\n" : "]\n");
	img_close(img);
	return rc;
}
