/* imgtool_check.c - `vbd-img check`: metadata consistency, like qemu-img check. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "imgtool.h"

/* Exit codes of qemu-img check, which scripts already know. */
#define CHECK_CLEAN   0
#define CHECK_ERROR   1   /* could not open or could not complete the check */
#define CHECK_CORRUPT 2
#define CHECK_LEAKS   3

static void check_help(void)
{
	printf("Usage: %s check [--json] [-r leaks|all] [-U] [-f FMT] FILE\n\n"
	       "Check the image's metadata: every reference count must match the\n"
	       "references to its cluster (qcow2).  raw and qcow images have no\n"
	       "such metadata and are always clean.\n\n"
	       "  -f FMT         raw, qcow2 or qcow; probed if absent (not with -r)\n"
	       "  -r leaks       free leaked clusters (opens the image read-write;\n"
	       "                 needs -f); corruptions are only reported\n"
	       "  -r all         also repair refcounts that are too low, as a crash\n"
	       "                 with lazy refcounts leaves them (qcow2: the refcount\n"
	       "                 structure is rebuilt from the references), and clear\n"
	       "                 the dirty and corrupt bits; other corruptions are\n"
	       "                 reported and nothing is written\n"
	       "  --json         one JSON object, fields as qemu-img check --output=json\n"
	       "  -U, --force-share  check it even if another process writes it (not\n"
	       "                 with -r; the result may then show passing problems)\n"
	       "  -h, --help     this help\n\n"
	       "Exit status (as qemu-img check): 0 no problems, 1 the check could not\n"
	       "be done (open or I/O error), 2 corruptions found, 3 only leaked\n"
	       "clusters found (wasted space, no harm to data).\n", TOOL_NAME);
}

static void print_human(const struct img_check_result *res, const struct img_check_result *fixed)
{
	if (fixed->leaks_fixed || fixed->corruptions_fixed)
		printf("The following inconsistencies were found and repaired:\n\n"
		       "    %" PRIu64 " leaked clusters\n    %" PRIu64 " corruptions\n\n"
		       "Double checking the fixed image now...\n", fixed->leaks_fixed,
		       fixed->corruptions_fixed);
	if (res->corruptions)
		printf("\n%" PRIu64 " errors were found on the image.\n"
		       "Data may be corrupted, or further writes to the image may corrupt it.\n",
		       res->corruptions);
	if (res->leaks)
		printf("\n%" PRIu64 " leaked clusters were found on the image.\n"
		       "This means waste of disk space, but no harm to data.\n", res->leaks);
	if (res->check_errors)
		printf("\n%" PRIu64 " internal errors have occurred during the check.\n",
		       res->check_errors);
	if (!res->corruptions && !res->leaks && !res->check_errors)
		printf("No errors were found on the image.\n");
	if (res->total_clusters)
		printf("%" PRIu64 "/%" PRIu64 " = %.2f%% allocated\n", res->allocated_clusters,
		       res->total_clusters,
		       100.0 * (double)res->allocated_clusters / (double)res->total_clusters);
}

static void print_json(const char *path, const char *format,
		       const struct img_check_result *res, const struct img_check_result *fixed)
{
	printf("{\n    \"filename\": ");
	json_string(stdout, path);
	printf(",\n    \"format\": ");
	json_string(stdout, format);
	printf(",\n    \"check-errors\": %" PRIu64, res->check_errors);
	printf(",\n    \"corruptions\": %" PRIu64, res->corruptions);
	printf(",\n    \"leaks\": %" PRIu64, res->leaks);
	printf(",\n    \"leaks-fixed\": %" PRIu64, fixed->leaks_fixed);
	printf(",\n    \"corruptions-fixed\": %" PRIu64, fixed->corruptions_fixed);
	printf(",\n    \"allocated-clusters\": %" PRIu64, res->allocated_clusters);
	printf(",\n    \"total-clusters\": %" PRIu64 "\n}\n", res->total_clusters);
}

int cmd_check(int argc, char **argv)
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
	unsigned fix = 0;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+f:r:hU", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'r':
			if (!strcmp(optarg, "leaks"))
				fix = IMG_FIX_LEAKS;
			else if (!strcmp(optarg, "all"))
				fix = IMG_FIX_LEAKS | IMG_FIX_ERRORS;
			else
				return usage_err("check", "-r takes 'leaks' or 'all'");
			break;
		case 'j': json = true; break;
		case 'U': share = true; break;
		case 'O':
			if ((r = parse_output("check", optarg, &json)))
				return r;
			break;
		case 'h': check_help(); return CHECK_CLEAN;
		default: return usage_err("check", "bad option");
		}
	}
	/* usage errors exit 1, which is also CHECK_ERROR: no check was done */
	if ((r = check_file_operand("check", argc, fmt)))
		return r;
	if (fix && share)
		return usage_err("check", "-U is only for read-only checks, not with -r");
	if (fix && !fmt)
		return usage_err("check", "-r writes to the image: give its format "
				 "with -f (formats are never guessed for writing)");

	const char *path = argv[optind];
	struct img *img;
	unsigned flags = IMG_NOBACKING | (!fix ? IMG_RDONLY : 0) |
			 ((fix & IMG_FIX_ERRORS) ? IMG_REPAIR : 0) |
			 (share ? IMG_FORCE_SHARE : 0);
	if (tool_open(path, fmt, flags, &img) < 0)
		return CHECK_ERROR;

	struct img_info in;
	struct img_check_result res, fixed = { 0 };
	img_get_info(img, &in);
	memset(&res, 0, sizeof(res));
	r = img_check(img, fix, &res);
	if (r == 0 && (res.leaks_fixed || res.corruptions_fixed)) {
		/* report the state after the repair, as qemu-img does */
		fixed = res;
		r = img_check(img, 0, &res);
	}
	if (r < 0) {
		tool_err("%s: the check could not be completed: %s", path, strerror(-r));
		img_close(img);
		return CHECK_ERROR;
	}
	if (json)
		print_json(path, in.format, &res, &fixed);
	else
		print_human(&res, &fixed);
	img_close(img);
	if (res.check_errors)
		return CHECK_ERROR;
	if (res.corruptions)
		return CHECK_CORRUPT;
	if (res.leaks)
		return CHECK_LEAKS;
	return CHECK_CLEAN;
}
