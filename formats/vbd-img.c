/*
 * vbd-img - inspect, create, convert and check disk images (raw, qcow2,
 * qcow), in the manner of qemu-img.  This file only dispatches; each
 * subcommand lives in formats/imgtool_<name>.c.  See vbd-img(1).
 */
#include <stdio.h>
#include <string.h>

#include "imgtool.h"
#include "util/log.h"
#include "util/version.h"

struct subcmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct subcmd subcmds[] = {
	{ "create", cmd_create, "create a new raw or qcow2 image" },
	{ "info", cmd_info, "show an image's format, sizes and properties" },
	{ "convert", cmd_convert, "copy an image into a new raw or qcow2 image (-c: compressed)" },
	{ "check", cmd_check, "check a qcow2 image's metadata; repair leaks" },
	{ "map", cmd_map, "show where the image's data lives" },
	{ "compare", cmd_compare, "compare the contents of two images" },
	{ "read", cmd_read, "read a byte range: verify a pattern, dump it or copy it out" },
	{ "write", cmd_write, "write a pattern or stdin into a byte range" },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: %s COMMAND [OPTIONS] ...\n\n"
		"Disk image tool of vbdfs for raw, qcow2 and qcow (version 1) images.\n\n"
		"Commands:\n", TOOL_NAME);
	for (size_t i = 0; i < sizeof(subcmds) / sizeof(subcmds[0]); i++)
		fprintf(f, "  %-9s %s\n", subcmds[i].name, subcmds[i].summary);
	fprintf(f, "\nRun '%s COMMAND --help' for a command's options.\n"
		"Sizes accept the suffixes K, M, G, T (powers of 1024).\n"
		"See vbd-img(1) for exit codes and details.\n", TOOL_NAME);
}

int main(int argc, char **argv)
{
	log_init(TOOL_NAME, VLOG_WARN, false);
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("%s (vbdfs) %s\n", TOOL_NAME, VBDFS_VERSION);
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(subcmds) / sizeof(subcmds[0]); i++)
		if (!strcmp(argv[1], subcmds[i].name))
			return subcmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "%s: unknown command '%s'\n", TOOL_NAME, argv[1]);
	fprintf(stderr, "Run '%s --help' for the list of commands.\n", TOOL_NAME);
	return EXIT_USAGE;
}
