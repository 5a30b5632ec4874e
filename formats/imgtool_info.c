/* imgtool_info.c - `vbd-img info`: what an image is, as qemu-img info shows it. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "imgtool.h"

static void info_help(void)
{
	printf("Usage: %s info [--json] [--backing-chain] [-U] [-f FMT] FILE\n\n"
	       "Show FILE's format, virtual size, disk usage, cluster size, qcow2\n"
	       "version (compat), compression, refcount width, dirty/corrupt flags\n"
	       "and backing file.  The image is opened read-only.\n\n"
	       "  -f FMT            raw, qcow2 or qcow; without it the format is probed\n"
	       "                    from the file's magic (said so in the output)\n"
	       "  --json            one JSON object (an array with --backing-chain),\n"
	       "                    field names as in qemu-img info --output=json\n"
	       "  --backing-chain   also show every backing file, top first\n"
	       "  -U, --force-share open it even if another process writes it (the\n"
	       "                    image is locked as qemu-img locks it)\n"
	       "  -h, --help        this help\n\n"
	       "Exit status: 0 success, 1 error.\n", TOOL_NAME);
}

static void print_human(const struct img_info *in, bool probed)
{
	char vs[32], ds[32];

	human_size(in->virtual_size, vs, sizeof(vs));
	human_size(in->allocated, ds, sizeof(ds));
	printf("image: %s\n", in->path);
	printf("file format: %s%s\n", in->format, probed ? " (probed; pass -f to be explicit)" : "");
	printf("virtual size: %s (%" PRIu64 " bytes)\n", vs, in->virtual_size);
	printf("disk size: %s\n", ds);
	if (in->cluster_size)
		printf("cluster_size: %u\n", in->cluster_size);
	if (in->backing_file)
		printf("backing file: %s\n", in->backing_file);
	if (in->backing_format)
		printf("backing file format: %s\n", in->backing_format);
	if (!strcmp(in->format, "qcow2")) {
		printf("Format specific information:\n");
		printf("    compat: %s\n", qcow2_compat_name(in->version) ?: "?");
		printf("    compression type: %s\n", in->compression ? in->compression : "zlib");
		printf("    refcount bits: %u\n", in->refcount_bits);
		printf("    dirty: %s\n", in->dirty ? "true" : "false");
		if (in->version >= 3)  /* a v3 feature bit; qemu-img omits it for v2 */
			printf("    corrupt: %s\n", in->corrupt ? "true" : "false");
	} else if (!strcmp(in->format, "qcow")) {
		printf("Format specific information:\n");
		printf("    version: %d\n", in->version);
		printf("    compression type: zlib\n");
	}
}

static void print_json(const struct img_info *in, bool probed, const char *indent)
{
	printf("%s{\n", indent);
	printf("%s    \"filename\": ", indent);
	json_string(stdout, in->path);
	printf(",\n%s    \"format\": ", indent);
	json_string(stdout, in->format);
	printf(",\n%s    \"format-probed\": %s", indent, probed ? "true" : "false");
	printf(",\n%s    \"virtual-size\": %" PRIu64, indent, in->virtual_size);
	printf(",\n%s    \"actual-size\": %" PRIu64, indent, in->allocated);
	printf(",\n%s    \"file-size\": %" PRIu64, indent, in->file_size);
	if (in->cluster_size)
		printf(",\n%s    \"cluster-size\": %u", indent, in->cluster_size);
	if (in->backing_file) {
		printf(",\n%s    \"backing-filename\": ", indent);
		json_string(stdout, in->backing_file);
	}
	if (in->backing_format) {
		printf(",\n%s    \"backing-filename-format\": ", indent);
		json_string(stdout, in->backing_format);
	}
	printf(",\n%s    \"dirty-flag\": %s", indent, in->dirty ? "true" : "false");
	if (!strcmp(in->format, "qcow2")) {
		printf(",\n%s    \"format-specific\": {\n", indent);
		printf("%s        \"type\": \"qcow2\",\n", indent);
		printf("%s        \"data\": {\n", indent);
		printf("%s            \"compat\": \"%s\",\n", indent,
		       qcow2_compat_name(in->version) ?: "?");
		printf("%s            \"compression-type\": \"%s\",\n", indent,
		       in->compression ? in->compression : "zlib");
		printf("%s            \"refcount-bits\": %u", indent, in->refcount_bits);
		if (in->version >= 3)
			printf(",\n%s            \"corrupt\": %s", indent,
			       in->corrupt ? "true" : "false");
		printf("\n");
		printf("%s        }\n%s    }", indent, indent);
	} else if (!strcmp(in->format, "qcow")) {
		printf(",\n%s    \"format-specific\": {\n", indent);
		printf("%s        \"type\": \"qcow\",\n", indent);
		printf("%s        \"data\": { \"version\": %d, \"compression-type\": \"zlib\" }\n",
		       indent, in->version);
		printf("%s    }", indent);
	}
	printf("\n%s}", indent);
}

int cmd_info(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, 'j' },
		{ "output", required_argument, NULL, 'O' },
		{ "backing-chain", no_argument, NULL, 'B' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	const char *fmt = NULL;
	bool json = false, chain = false, share = false;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+f:hU", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'j': json = true; break;
		case 'O':
			if ((r = parse_output("info", optarg, &json)))
				return r;
			break;
		case 'B': chain = true; break;
		case 'U': share = true; break;
		case 'h': info_help(); return EXIT_OK;
		default: return usage_err("info", "bad option");
		}
	}
	if ((r = check_file_operand("info", argc, fmt)))
		return r;

	struct img *img;
	unsigned flags = IMG_RDONLY | (chain ? 0 : IMG_NOBACKING) | (share ? IMG_FORCE_SHARE : 0);
	if (tool_open(argv[optind], fmt, flags, &img) < 0)
		return EXIT_FAIL;

	/* Walk the chain: each layer's backing image is open inside its parent. */
	struct img *layer = img;
	bool probed = !fmt;
	int n = 0;
	if (json && chain)
		printf("[\n");
	while (layer) {
		struct img_info in;
		img_get_info(layer, &in);
		if (n)
			printf(json ? ",\n" : "\n");
		if (json)
			print_json(&in, probed, chain ? "    " : "");
		else
			print_human(&in, probed);
		/* a backing file without a format extension was probed */
		probed = in.backing_file && !in.backing_format;
		layer = chain ? in.backing : NULL;
		n++;
	}
	if (json)
		printf(chain ? "\n]\n" : "\n");
	img_close(img);
	return EXIT_OK;
}
