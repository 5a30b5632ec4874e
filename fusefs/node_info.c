/*
 * node_info.c - info, info.json and map.
 *
 * info: the device's identity, the backend's facts (vbd_format_info: xenbus
 * state, ABI, negotiated features), then one block of imageN.* keys per
 * layer of the image chain (0 = the image served, 1 = its backing file...).
 * info.json: the same as one JSON object.  map: the allocation in the form
 * of `qemu-img map` (human), with compressed data marked as such.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blkback/vbd.h"
#include "formats/image.h"
#include "node.h"

#define MAX_CHAIN 64
#define BACKEND_INFO_MAX 16384

/* The open layers of the chain, top first; returns the count. */
static unsigned chain(struct img *img, struct img_info *out, unsigned max)
{
	unsigned n = 0;

	while (img && n < max) {
		img_get_info(img, &out[n]);
		img = out[n].backing;
		n++;
	}
	return n;
}

static void layer_text(struct text *t, unsigned i, const struct img_info *in)
{
	text_printf(t, "image%u.format: %s\n", i, in->format ? in->format : "?");
	text_printf(t, "image%u.path: %s\n", i, in->path ? in->path : "?");
	text_printf(t, "image%u.virtual_size: %" PRIu64 "\n", i, in->virtual_size);
	text_printf(t, "image%u.file_size: %" PRIu64 "\n", i, in->file_size);
	text_printf(t, "image%u.allocated: %" PRIu64 "\n", i, in->allocated);
	text_printf(t, "image%u.cluster_size: %" PRIu32 "\n", i, in->cluster_size);
	text_printf(t, "image%u.version: %d\n", i, in->version);
	text_printf(t, "image%u.compression: %s\n", i, in->compression ? in->compression : "none");
	text_printf(t, "image%u.readonly: %s\n", i, in->readonly ? "yes" : "no");
	text_printf(t, "image%u.dirty: %s\n", i, in->dirty ? "yes" : "no");
	text_printf(t, "image%u.corrupt: %s\n", i, in->corrupt ? "yes" : "no");
	if (in->backing_file)
		text_printf(t, "image%u.backing_file: %s\n", i, in->backing_file);
	if (in->backing_format)
		text_printf(t, "image%u.backing_format: %s\n", i, in->backing_format);
}

static void layer_json(struct text *t, const struct img_info *in)
{
	text_printf(t, "{\"format\": ");
	text_json_str(t, in->format);
	text_printf(t, ", \"path\": ");
	text_json_str(t, in->path);
	text_printf(t, ", \"virtual_size\": %" PRIu64 ", \"file_size\": %" PRIu64
		    ", \"allocated\": %" PRIu64 ", \"cluster_size\": %" PRIu32
		    ", \"version\": %d, \"compression\": ",
		    in->virtual_size, in->file_size, in->allocated, in->cluster_size,
		    in->version);
	if (in->compression)
		text_json_str(t, in->compression);
	else
		text_printf(t, "null");
	text_printf(t, ", \"readonly\": %s, \"dirty\": %s, \"corrupt\": %s, \"backing_file\": ",
		    in->readonly ? "true" : "false", in->dirty ? "true" : "false",
		    in->corrupt ? "true" : "false");
	if (in->backing_file)
		text_json_str(t, in->backing_file);
	else
		text_printf(t, "null");
	text_printf(t, ", \"backing_format\": ");
	if (in->backing_format)
		text_json_str(t, in->backing_format);
	else
		text_printf(t, "null");
	text_printf(t, "}");
}

/* The backend's lines, without the keys we print ourselves above them. */
static void backend_text(struct vbd *v, struct text *t, const char *buf)
{
	const char *p = buf;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		static const char *const ours[] = { "domid:", "devid:", "vdev:", "domain:", "mode:" };
		bool dup = false;
		for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
			dup |= !strncmp(p, ours[i], strlen(ours[i]));
		if (!dup && len > 0)
			text_printf(t, "%.*s\n", (int)len, p);
		p += len + (nl ? 1 : 0);
	}
}

void node_info_text(struct vbd *v, struct text *t, bool json)
{
	struct img_info layers[MAX_CHAIN];
	unsigned n = chain(vbd_image(v), layers, MAX_CHAIN);
	char *be = calloc(1, BACKEND_INFO_MAX);
	size_t belen = 0;

	if (be)
		belen = vbd_format_info(v, be, BACKEND_INFO_MAX, json);
	if (!json) {
		text_printf(t, "device: %s\n", vbd_name(v));
		text_printf(t, "domid: %u\n", (unsigned)vbd_domid(v));
		text_printf(t, "devid: %" PRIu32 "\n", vbd_devid(v));
		text_printf(t, "vdev: %s\n", vbd_vdev(v) ? vbd_vdev(v) : "-");
		text_printf(t, "domain: %s\n", vbd_domain_name(v) ? vbd_domain_name(v) : "-");
		text_printf(t, "mode: %s\n", vbd_readonly(v) ? "r" : "w");
		if (be)
			backend_text(v, t, be);
		for (unsigned i = 0; i < n; i++)
			layer_text(t, i, &layers[i]);
		free(be);
		return;
	}
	text_printf(t, "{\"device\": ");
	text_json_str(t, vbd_name(v));
	text_printf(t, ", \"domid\": %u, \"devid\": %" PRIu32 ", \"vdev\": ",
		    (unsigned)vbd_domid(v), vbd_devid(v));
	if (vbd_vdev(v))
		text_json_str(t, vbd_vdev(v));
	else
		text_printf(t, "null");
	text_printf(t, ", \"domain\": ");
	if (vbd_domain_name(v))
		text_json_str(t, vbd_domain_name(v));
	else
		text_printf(t, "null");
	text_printf(t, ", \"readonly\": %s, \"backend\": ", vbd_readonly(v) ? "true" : "false");
	/* The backend's own JSON object, trimmed of its newline. */
	while (belen > 0 && (be[belen - 1] == '\n' || be[belen - 1] == ' '))
		belen--;
	if (be && belen > 0 && be[0] == '{' && be[belen - 1] == '}')
		text_printf(t, "%.*s", (int)belen, be);
	else
		text_printf(t, "{}");
	text_printf(t, ", \"images\": [");
	for (unsigned i = 0; i < n; i++) {
		if (i)
			text_printf(t, ", ");
		layer_json(t, &layers[i]);
	}
	text_printf(t, "]}\n");
	free(be);
}

static void map_line(struct text *t, const struct img_extent *e, const struct img_info *layers,
		     unsigned n)
{
	const char *file = e->depth < n && layers[e->depth].path ? layers[e->depth].path : "";
	char start[24], length[24], mapped[24];

	/* %#-16llx as qemu-img map prints it (0 without the 0x). */
	snprintf(start, sizeof(start), "%#" PRIx64, e->offset);
	snprintf(length, sizeof(length), "%#" PRIx64, e->length);
	if (e->compressed)
		snprintf(mapped, sizeof(mapped), "compressed");
	else
		snprintf(mapped, sizeof(mapped), "%#" PRIx64, e->host_offset);
	text_printf(t, "%-16s%-16s%-16s%s\n", start, length, mapped, file);
}

/* Extents that continue each other (same layer, same kind, contiguous in
 * the host file) print as one, as qemu-img map merges them. */
static bool continues(const struct img_extent *a, const struct img_extent *b)
{
	if (a->type != b->type || a->compressed != b->compressed || a->depth != b->depth)
		return false;
	if (a->type == IMG_EXT_DATA && !a->compressed)
		return a->host_offset + a->length == b->host_offset;
	return true;
}

void node_map_text(struct vbd *v, struct text *t)
{
	struct img_info layers[MAX_CHAIN];
	struct img *img = vbd_image(v);
	unsigned n = chain(img, layers, MAX_CHAIN);
	uint64_t size = img ? img_size(img) : 0, off = 0;
	struct img_extent cur = { .length = 0 }, e;

	text_printf(t, "%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
	while (off < size && !t->oom) {
		int rc = img_block_status(img, off, size - off, &e);
		if (rc < 0 || e.length == 0 || e.offset != off || e.length > size - off) {
			text_printf(t, "# error: block status at %#" PRIx64 ": %s\n", off,
				    rc < 0 ? "I/O error" : "bad extent");
			break;
		}
		if (cur.length && continues(&cur, &e)) {
			cur.length += e.length;
		} else {
			if (cur.length && cur.type == IMG_EXT_DATA)
				map_line(t, &cur, layers, n);
			cur = e;
		}
		off += e.length;
	}
	if (cur.length && cur.type == IMG_EXT_DATA)
		map_line(t, &cur, layers, n);
}
