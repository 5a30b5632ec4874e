/*
 * vbdctl - attach, detach, list and resize the disks vbdfs serves.
 *
 * It does what a Xen toolstack does for a block device: it writes (and
 * removes) the backend directory /local/domain/0/backend/<type>/<domid>/<devid>
 * and the guest's frontend directory /local/domain/<domid>/device/vbd/<devid>,
 * with the permissions libxl uses, in xenstore transactions.  The vbdfs
 * daemon watches the backend directories and does the rest.
 *
 * See man/vbdctl.8.  Exit codes: 0 ok, 1 failure, 2 usage, 3 not found,
 * 4 busy.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xenstore.h>

#include "blkback/vdev.h"
#include "blkback/xenbus.h"
#include "formats/image.h"
#include "util/version.h"

enum { EX_OK = 0, EX_FAIL = 1, EX_USAGE = 2, EX_NOTFOUND = 3, EX_BUSY = 4 };

#define BACKEND_DOMID 0
#define MAX_DOMID 0x7fef /* DOMID_FIRST_RESERVED - 1 */

struct opts {
	const char *sim;
	const char *type;         /* NULL: vbdfs, or every type for list */
	const char *format;
	bool readonly;
	bool json;
	int wait;                 /* attach: seconds to wait for the backend (0 = no wait) */
	int timeout;              /* detach/resize: seconds */
};

static void usage(FILE *f)
{
	fprintf(f,
"Usage: vbdctl [--sim DIR] COMMAND [ARGS]\n"
"Attach disk images to Xen guests served by vbdfs, and manage them.\n"
"\n"
"Commands:\n"
"  attach DOMID VDEV IMAGE --format raw|qcow2|qcow [--readonly] [--wait SECS]\n"
"                          give domain DOMID a disk VDEV (xvda, xvdb, sda...)\n"
"                          backed by IMAGE; --format is required unless\n"
"                          --readonly (the format of a writable image is never\n"
"                          guessed)\n"
"  detach DOMID VDEV [--timeout SECS]\n"
"                          close the disk (the guest is asked to let go, for up\n"
"                          to SECS seconds, default 10) and remove its nodes\n"
"  list [--json] [DOMID]   the disks, their images and XenBus states\n"
"  resize DOMID VDEV SIZE [--timeout SECS]\n"
"                          grow a disk online to SIZE bytes (suffixes K M G T)\n"
"\n"
"Options:\n"
"  --sim DIR               use the simulated hypervisor of `vbdfs --sim DIR`\n"
"                          (its xenstore at DIR/xenstored)\n"
"  --backend-type TYPE     vbdfs (default) or vbd (disks xl created with\n"
"                          backendtype=phy and a no-op hotplug script)\n"
"  -h, --help              this help\n"
"  -V, --version           print the version\n"
"\n"
"Exit status: 0 success, 1 failure, 2 usage error, 3 not found (image,\n"
"domain or disk), 4 busy (the disk is already attached).\n");
}

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("vbdctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct xs_handle *connect_store(const struct opts *o)
{
	struct xs_handle *xs;
	char path[PATH_MAX];

	if (o->sim) {
		if (snprintf(path, sizeof(path), "%s/xenstored", o->sim) >= (int)sizeof(path)) {
			fail(0, "--sim path too long");
			return NULL;
		}
		setenv("XENSTORED_PATH", path, 1);
	}
	xs = xs_open(o->sim ? XS_OPEN_SOCKETONLY : 0);
	if (!xs) {
		const char *p = getenv("XENSTORED_PATH");
		fail(0, "cannot connect to xenstore%s%s: %s%s", p ? " at " : "", p ? p : "",
		     strerror(errno), o->sim ? " (is `vbdfs --sim DIR` running?)" : "");
	}
	return xs;
}

/* Read a node into buf; false if absent or too long. */
static bool rd(struct xs_handle *xs, xs_transaction_t t, const char *path, char *buf, size_t len)
{
	unsigned int n;
	char *v = xs_read(xs, t, path, &n);

	if (!v)
		return false;
	if (n >= len || strlen(v) != n) {
		free(v);
		return false;
	}
	memcpy(buf, v, n + 1);
	free(v);
	return true;
}

static bool exists(struct xs_handle *xs, xs_transaction_t t, const char *path)
{
	unsigned int n;
	char *v = xs_read(xs, t, path, &n);

	free(v);
	return v != NULL;
}

static int read_state(struct xs_handle *xs, const char *dir)
{
	char path[300], buf[16];
	uint64_t v;

	snprintf(path, sizeof(path), "%s/state", dir);
	if (!rd(xs, XBT_NULL, path, buf, sizeof(buf)))
		return -1;
	if (xb_parse_uint(buf, 99, &v) < 0)
		return 0;
	return (int)v;
}

static int parse_domid(const char *s, unsigned *domid)
{
	uint64_t v;

	if (xb_parse_uint(s, MAX_DOMID, &v) < 0 || v == BACKEND_DOMID)
		return fail(EX_USAGE, "invalid domain id '%s' (want 1..%u)", s, MAX_DOMID);
	*domid = (unsigned)v;
	return 0;
}

static int parse_vdev(const char *s, uint32_t *devid)
{
	if (vdev_parse(s, devid) < 0)
		return fail(EX_USAGE, "invalid virtual device '%s' (want xvdX, sdX, hdX or a device "
			    "number; whole disks only)", s);
	return 0;
}

static const char *type_of(const struct opts *o)
{
	return o->type ? o->type : "vbdfs";
}

static void dev_paths(const struct opts *o, unsigned domid, uint32_t devid, char *be, char *fe,
		      size_t len)
{
	snprintf(be, len, "/local/domain/%u/backend/%s/%u/%" PRIu32, BACKEND_DOMID, type_of(o),
		 domid, devid);
	snprintf(fe, len, "/local/domain/%u/device/vbd/%" PRIu32, domid, devid);
}

/* Write "dir/key" = val in transaction t. */
static bool put(struct xs_handle *xs, xs_transaction_t t, const char *dir, const char *key,
		const char *val)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	return xs_write(xs, t, path, val, (unsigned)strlen(val));
}

static bool make_dir(struct xs_handle *xs, xs_transaction_t t, const char *dir,
		     unsigned owner, unsigned reader)
{
	struct xs_permissions perms[2] = {
		{ .id = owner, .perms = XS_PERM_NONE },
		{ .id = reader, .perms = XS_PERM_READ },
	};

	return xs_mkdir(xs, t, dir) && xs_set_permissions(xs, t, dir, perms, 2);
}

/* ---------------------------------------------------------------- attach */

static int check_image(const char *image, bool readonly, char *abs, size_t len)
{
	struct stat st;

	if (stat(image, &st) < 0)
		return fail(errno == ENOENT ? EX_NOTFOUND : EX_FAIL, "image %s: %s", image,
			    strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return fail(EX_USAGE, "image %s is not a regular file or a block device", image);
	if (access(image, readonly ? R_OK : R_OK | W_OK) < 0)
		return fail(EX_FAIL, "image %s: %s%s", image, strerror(errno),
			    readonly ? "" : " (attach it --readonly?)");
	if (!realpath(image, abs))
		return fail(EX_FAIL, "image %s: %s", image, strerror(errno));
	if (strlen(abs) >= len)
		return fail(EX_USAGE, "image path too long");
	return 0;
}

/* Wait for the backend to take the disk (InitWait or later) or fail. */
static int wait_backend(struct xs_handle *xs, const char *be, const char *type, int secs)
{
	uint64_t end = now_ms() + (uint64_t)secs * 1000;
	char path[300], err[256];
	int st;

	snprintf(path, sizeof(path), "%s/error", be);
	for (;;) {
		if (rd(xs, XBT_NULL, path, err, sizeof(err)))
			return fail(EX_FAIL, "vbdfs refused the disk: %s (its nodes stay until "
				    "vbdctl detach)", err);
		st = read_state(xs, be);
		if (st >= XB_INITWAIT && st <= XB_CONNECTED)
			return EX_OK;
		if (st == XB_CLOSED)
			return fail(EX_FAIL, "vbdfs closed the disk (its nodes stay until vbdctl detach)");
		if (now_ms() >= end)
			return fail(EX_FAIL, "no vbdfs took the disk within %d s (is vbdfs running "
				    "with --backend-type %s?); the disk stays attached and is "
				    "served when vbdfs starts", secs, type);
		sleep_ms(50);
	}
}

static int cmd_attach(const struct opts *o, int argc, char **argv)
{
	char be[256], fe[256], path[300], abs[PATH_MAX], vname[32], val[32], state[32];
	const char *fmt = NULL;
	unsigned domid;
	uint32_t devid;
	struct xs_handle *xs;
	int r;

	if (argc != 3)
		return fail(EX_USAGE, "attach needs DOMID VDEV IMAGE (see --help)");
	if ((r = parse_domid(argv[0], &domid)) || (r = parse_vdev(argv[1], &devid)))
		return r;
	if (o->format) {
		fmt = xb_format_name(o->format);
		if (!fmt)
			return fail(EX_USAGE, "unknown format '%s' (use raw, qcow2 or qcow)", o->format);
	} else if (!o->readonly) {
		return fail(EX_USAGE, "--format is required for a writable disk (the format of "
			    "a writable image is never guessed)");
	}
	if ((r = check_image(argv[2], o->readonly, abs, XB_PARAMS_MAX)))
		return r;
	if (vdev_name(devid, vname, sizeof(vname)) < 0)
		snprintf(vname, sizeof(vname), "%s", argv[1]);
	dev_paths(o, domid, devid, be, fe, sizeof(be));

	xs = connect_store(o);
	if (!xs)
		return EX_FAIL;
	r = EX_FAIL;
	for (int tries = 0; tries < 32; tries++) {
		xs_transaction_t t = xs_transaction_start(xs);
		bool okw;

		if (t == XBT_NULL) {
			fail(0, "xenstore transaction: %s", strerror(errno));
			break;
		}
		snprintf(path, sizeof(path), "/local/domain/%u", domid);
		if (!exists(xs, t, path)) {
			xs_transaction_end(xs, t, true);
			r = fail(EX_NOTFOUND, "domain %u does not exist (no %s in xenstore)", domid, path);
			break;
		}
		if (exists(xs, t, be) || exists(xs, t, fe)) {
			snprintf(path, sizeof(path), "%s/state", be);
			uint64_t sv;
			if (!rd(xs, t, path, state, sizeof(state)))
				strcpy(state, exists(xs, t, be) ? "unknown" : "absent, frontend left over");
			else if (xb_parse_uint(state, 99, &sv) == 0)
				snprintf(state, sizeof(state), "%s", xb_state_name((int)sv));
			xs_transaction_end(xs, t, true);
			r = fail(EX_BUSY, "%s of domain %u is already attached (backend state %s); "
				 "detach it first", vname, domid, state);
			break;
		}
		/* Backend first: blkfront's probe checks that it exists.  Keys
		 * inherit the directory's permissions. */
		snprintf(val, sizeof(val), "%u", domid);
		okw = make_dir(xs, t, be, BACKEND_DOMID, domid) &&
		      put(xs, t, be, "frontend", fe) && put(xs, t, be, "frontend-id", val) &&
		      put(xs, t, be, "online", "1") && put(xs, t, be, "removable", "0") &&
		      put(xs, t, be, "bootable", "1") && put(xs, t, be, "dev", vname) &&
		      put(xs, t, be, "type", "phy") && put(xs, t, be, "mode", o->readonly ? "r" : "w") &&
		      put(xs, t, be, "params", abs) && (!fmt || put(xs, t, be, "format", fmt)) &&
		      put(xs, t, be, "device-type", "disk") && put(xs, t, be, "state", "1");
		snprintf(val, sizeof(val), "%" PRIu32, devid);
		okw = okw && make_dir(xs, t, fe, domid, BACKEND_DOMID) &&
		      put(xs, t, fe, "backend", be) && put(xs, t, fe, "backend-id", "0") &&
		      put(xs, t, fe, "state", "1") && put(xs, t, fe, "virtual-device", val) &&
		      put(xs, t, fe, "device-type", "disk");
		if (!okw) {
			r = fail(EX_FAIL, "cannot write %s: %s", be, strerror(errno));
			xs_transaction_end(xs, t, true);
			break;
		}
		if (xs_transaction_end(xs, t, false)) {
			r = EX_OK;
			break;
		}
		if (errno != EAGAIN) {
			r = fail(EX_FAIL, "xenstore transaction failed: %s", strerror(errno));
			break;
		}
	}
	if (r == EX_OK && o->wait > 0)
		r = wait_backend(xs, be, type_of(o), o->wait);
	xs_close(xs);
	return r;
}

/* ---------------------------------------------------------------- disks */

/* A disk as vbdctl list shows it (and detach needs its image). */
struct row {
	unsigned domid;
	uint32_t devid;
	const char *type;
	char vdev[32], image[XB_PARAMS_MAX], format[16], mode[8], error[256];
	int be_state, fe_state;
};

static void read_row(struct xs_handle *xs, const char *be, struct row *r)
{
	char path[300], fe[256], params[XB_PARAMS_MAX + 16], fmt[16];
	const char *f = NULL;
	char err[64];

	snprintf(path, sizeof(path), "%s/params", be);
	if (!rd(xs, XBT_NULL, path, params, sizeof(params)))
		params[0] = '\0';
	snprintf(path, sizeof(path), "%s/format", be);
	bool have_fmt = rd(xs, XBT_NULL, path, fmt, sizeof(fmt));
	snprintf(path, sizeof(path), "%s/mode", be);
	if (!rd(xs, XBT_NULL, path, r->mode, sizeof(r->mode)))
		strcpy(r->mode, "?");
	bool ro = strchr(r->mode, 'w') == NULL;
	if (xb_image_spec(params, have_fmt ? fmt : NULL, ro,
			  strcmp(r->type, "vbd") == 0 ? "raw" : NULL, &f, r->image,
			  sizeof(r->image), err, sizeof(err)) < 0)
		snprintf(r->image, sizeof(r->image), "%.*s", (int)sizeof(r->image) - 1, params);
	snprintf(r->format, sizeof(r->format), "%s", f ? f : "probe");
	snprintf(path, sizeof(path), "%s/error", be);
	if (!rd(xs, XBT_NULL, path, r->error, sizeof(r->error)))
		r->error[0] = '\0';
	r->be_state = read_state(xs, be);
	snprintf(path, sizeof(path), "%s/frontend", be);
	r->fe_state = rd(xs, XBT_NULL, path, fe, sizeof(fe)) ? read_state(xs, fe) : -1;
	if (vdev_name(r->devid, r->vdev, sizeof(r->vdev)) < 0)
		snprintf(r->vdev, sizeof(r->vdev), "-");
}

/* ---------------------------------------------------------------- detach */

/* Remove both directories in one transaction. */
static int remove_nodes(struct xs_handle *xs, const char *be, const char *fe)
{
	for (int tries = 0; tries < 32; tries++) {
		xs_transaction_t t = xs_transaction_start(xs);
		if (t == XBT_NULL)
			break;
		if (exists(xs, t, fe))
			xs_rm(xs, t, fe);
		if (exists(xs, t, be))
			xs_rm(xs, t, be);
		if (xs_transaction_end(xs, t, false))
			return EX_OK;
		if (errno != EAGAIN)
			break;
	}
	return fail(EX_FAIL, "cannot remove %s: %s", be, strerror(errno));
}

/* After a writable disk's nodes are gone, vbdfs lets go of its image: wait
 * (up to the detach timeout) until a writer could open it, so that
 * qemu-img and the like can use it as soon as we return.  A reader still
 * holding one of the disk's /vbd files keeps it open: say so. */
static void wait_image_free(const char *image, uint64_t end)
{
	char err[512];

	while (img_check_free(image, err, sizeof(err)) == -EBUSY) {
		if (now_ms() >= end) {
			fprintf(stderr, "vbdctl: warning: the disk is detached, but its image is "
				"still in use: %s\n", err);
			return;
		}
		sleep_ms(50);
	}
}

static int cmd_detach(const struct opts *o, int argc, char **argv)
{
	char be[256], fe[256], path[300];
	unsigned domid;
	uint32_t devid;
	struct xs_handle *xs;
	int r, st;
	bool okw = false;

	if (argc != 2)
		return fail(EX_USAGE, "detach needs DOMID VDEV (see --help)");
	if ((r = parse_domid(argv[0], &domid)) || (r = parse_vdev(argv[1], &devid)))
		return r;
	dev_paths(o, domid, devid, be, fe, sizeof(be));
	xs = connect_store(o);
	if (!xs)
		return EX_FAIL;
	if (!exists(xs, XBT_NULL, be)) {
		xs_close(xs);
		return fail(EX_NOTFOUND, "%s is not attached to domain %u", argv[1], domid);
	}
	struct row row = { .domid = domid, .devid = devid, .type = type_of(o) };
	read_row(xs, be, &row);
	uint64_t end = now_ms() + (uint64_t)o->timeout * 1000;
	st = read_state(xs, be);
	if (st > XB_INITIALISING && st < XB_CLOSED) {
		/* As libxl: online=0 and Closing in one transaction, then
		 * wait for the backend to reach Closed. */
		for (int tries = 0; tries < 32 && !okw; tries++) {
			xs_transaction_t t = xs_transaction_start(xs);
			if (t == XBT_NULL)
				break;
			okw = exists(xs, t, be) && put(xs, t, be, "online", "0") &&
			      put(xs, t, be, "state", "5");
			if (!xs_transaction_end(xs, t, !okw) && errno == EAGAIN)
				okw = false;
			else if (!okw)
				break;
		}
		while (okw && read_state(xs, be) != XB_CLOSED && exists(xs, XBT_NULL, be) &&
		       now_ms() < end)
			sleep_ms(50);
		if (okw && exists(xs, XBT_NULL, be) && read_state(xs, be) != XB_CLOSED) {
			st = read_state(xs, fe);
			fprintf(stderr, "vbdctl: warning: the disk did not close within %d s (frontend "
				"state %s); removing it anyway\n", o->timeout,
				st < 0 ? "absent" : xb_state_name(st));
		}
	}
	r = remove_nodes(xs, be, fe);
	if (r == EX_OK && strchr(row.mode, 'w') && row.image[0] == '/')
		wait_image_free(row.image, end);
	/* An empty backend/<type>/<domid> directory is left by the last disk. */
	snprintf(path, sizeof(path), "/local/domain/%u/backend/%s/%u", BACKEND_DOMID, type_of(o),
		 domid);
	unsigned int n = 0;
	char **ents = xs_directory(xs, XBT_NULL, path, &n);
	if (ents && n == 0)
		xs_rm(xs, XBT_NULL, path);
	free(ents);
	xs_close(xs);
	return r;
}

/* ---------------------------------------------------------------- list */

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_row(const struct row *r, bool json, bool first)
{
	if (json) {
		printf("%s\n  {\"domid\": %u, \"vdev\": ", first ? "" : ",", r->domid);
		json_str(r->vdev);
		printf(", \"devid\": %" PRIu32 ", \"type\": ", r->devid);
		json_str(r->type);
		printf(", \"image\": ");
		json_str(r->image);
		printf(", \"format\": ");
		json_str(r->format);
		printf(", \"mode\": ");
		json_str(r->mode);
		printf(", \"backend_state\": %d, \"backend_state_name\": \"%s\"", r->be_state,
		       r->be_state < 0 ? "absent" : xb_state_name(r->be_state));
		printf(", \"frontend_state\": %d, \"frontend_state_name\": \"%s\"", r->fe_state,
		       r->fe_state < 0 ? "absent" : xb_state_name(r->fe_state));
		if (r->error[0]) {
			printf(", \"error\": ");
			json_str(r->error);
		}
		printf("}");
		return;
	}
	printf("%-6u %-6s %-9" PRIu32 " %-6s %-6s %-4s %-13s %-13s %s%s%s\n", r->domid, r->vdev,
	       r->devid, r->type, r->format, r->mode,
	       r->be_state < 0 ? "absent" : xb_state_name(r->be_state),
	       r->fe_state < 0 ? "absent" : xb_state_name(r->fe_state), r->image,
	       r->error[0] ? "  error: " : "", r->error);
}


static int cmd_list(const struct opts *o, int argc, char **argv)
{
	static const char *const all_types[] = { "vbdfs", "vbd" };
	const char *const *types = o->type ? &o->type : all_types;
	unsigned ntypes = o->type ? 1 : 2, only = 0, count = 0;
	struct xs_handle *xs;

	if (argc > 1)
		return fail(EX_USAGE, "list takes at most a DOMID (see --help)");
	if (argc == 1) {
		int r = parse_domid(argv[0], &only);
		if (r)
			return r;
	}
	xs = connect_store(o);
	if (!xs)
		return EX_FAIL;
	if (o->json)
		printf("[");
	else
		printf("%-6s %-6s %-9s %-6s %-6s %-4s %-13s %-13s %s\n", "DOMID", "VDEV", "DEVID",
		       "TYPE", "FORMAT", "MODE", "BACKEND", "FRONTEND", "IMAGE");
	for (unsigned ti = 0; ti < ntypes; ti++) {
		char root[128], path[192];
		unsigned nd = 0;
		char **doms;

		snprintf(root, sizeof(root), "/local/domain/%u/backend/%s", BACKEND_DOMID, types[ti]);
		doms = xs_directory(xs, XBT_NULL, root, &nd);
		for (unsigned i = 0; doms && i < nd; i++) {
			uint64_t domid, devid;
			unsigned nv = 0;
			char **devs;

			if (xb_parse_uint(doms[i], MAX_DOMID, &domid) < 0 || (only && domid != only))
				continue;
			snprintf(path, sizeof(path), "%s/%s", root, doms[i]);
			devs = xs_directory(xs, XBT_NULL, path, &nv);
			for (unsigned j = 0; devs && j < nv; j++) {
				struct row r = { .domid = (unsigned)domid, .type = types[ti] };
				char be[256];

				if (xb_parse_uint(devs[j], UINT32_MAX, &devid) < 0)
					continue;
				r.devid = (uint32_t)devid;
				snprintf(be, sizeof(be), "%s/%s", path, devs[j]);
				read_row(xs, be, &r);
				print_row(&r, o->json, count == 0);
				count++;
			}
			free(devs);
		}
		free(doms);
	}
	if (o->json)
		printf("%s]\n", count ? "\n" : "");
	xs_close(xs);
	return EX_OK;
}

/* ---------------------------------------------------------------- resize */

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	if (!(*s >= '0' && *s <= '9'))
		return -EINVAL;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case '\0': break;
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	case 'T': case 't': shift = 40; end++; break;
	default: return -EINVAL;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int cmd_resize(const struct opts *o, int argc, char **argv)
{
	char be[256], fe[256], path[300], buf[256], val[32];
	unsigned domid;
	uint32_t devid;
	uint64_t size, sectors;
	struct xs_handle *xs;
	int r;

	if (argc != 3)
		return fail(EX_USAGE, "resize needs DOMID VDEV SIZE (see --help)");
	if ((r = parse_domid(argv[0], &domid)) || (r = parse_vdev(argv[1], &devid)))
		return r;
	if (parse_size(argv[2], &size) < 0 || size == 0 || size % 512)
		return fail(EX_USAGE, "invalid size '%s' (bytes, a multiple of 512; suffixes K M G T)",
			    argv[2]);
	dev_paths(o, domid, devid, be, fe, sizeof(be));
	xs = connect_store(o);
	if (!xs)
		return EX_FAIL;
	if (!exists(xs, XBT_NULL, be)) {
		xs_close(xs);
		return fail(EX_NOTFOUND, "%s is not attached to domain %u", argv[1], domid);
	}
	snprintf(path, sizeof(path), "%s/resize-error", be);
	xs_rm(xs, XBT_NULL, path);
	snprintf(path, sizeof(path), "%s/resize", be);
	snprintf(val, sizeof(val), "%" PRIu64, size);
	if (!xs_write(xs, XBT_NULL, path, val, (unsigned)strlen(val))) {
		xs_close(xs);
		return fail(EX_FAIL, "cannot write %s: %s", path, strerror(errno));
	}
	/* vbdfs grows the image, writes sectors and removes the request. */
	uint64_t end = now_ms() + (uint64_t)o->timeout * 1000;
	while (exists(xs, XBT_NULL, path) && now_ms() < end)
		sleep_ms(50);
	r = EX_OK;
	snprintf(path, sizeof(path), "%s/resize-error", be);
	if (rd(xs, XBT_NULL, path, buf, sizeof(buf))) {
		r = fail(EX_FAIL, "resize failed: %s", buf);
	} else {
		snprintf(path, sizeof(path), "%s/resize", be);
		if (exists(xs, XBT_NULL, path)) {
			xs_rm(xs, XBT_NULL, path);
			r = fail(EX_FAIL, "vbdfs did not resize the disk within %d s", o->timeout);
		} else {
			snprintf(path, sizeof(path), "%s/sectors", be);
			if (!rd(xs, XBT_NULL, path, buf, sizeof(buf)) ||
			    xb_parse_uint(buf, UINT64_MAX, &sectors) < 0 || sectors != size / 512)
				r = fail(EX_FAIL, "the disk has %s sectors, not %" PRIu64, buf, size / 512);
		}
	}
	xs_close(xs);
	return r;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	enum { O_SIM = 256, O_TYPE, O_FORMAT, O_RO, O_JSON, O_WAIT, O_TIMEOUT };
	static const struct option longopts[] = {
		{ "sim", required_argument, NULL, O_SIM },
		{ "backend-type", required_argument, NULL, O_TYPE },
		{ "format", required_argument, NULL, O_FORMAT },
		{ "readonly", no_argument, NULL, O_RO },
		{ "json", no_argument, NULL, O_JSON },
		{ "wait", required_argument, NULL, O_WAIT },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .timeout = 10 };
	uint64_t v;
	int c;

	while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
		switch (c) {
		case O_SIM: o.sim = optarg; break;
		case O_TYPE:
			if (strcmp(optarg, "vbdfs") != 0 && strcmp(optarg, "vbd") != 0)
				return fail(EX_USAGE, "unknown backend type '%s' (use vbdfs or vbd)", optarg);
			o.type = optarg;
			break;
		case O_FORMAT: o.format = optarg; break;
		case O_RO: o.readonly = true; break;
		case O_JSON: o.json = true; break;
		case O_WAIT:
		case O_TIMEOUT:
			if (xb_parse_uint(optarg, 3600, &v) < 0)
				return fail(EX_USAGE, "invalid number of seconds '%s'", optarg);
			if (c == O_WAIT)
				o.wait = (int)v;
			else
				o.timeout = (int)v;
			break;
		case 'h': usage(stdout); return EX_OK;
		case 'V': printf("vbdctl (vbdfs) %s\n", VBDFS_VERSION); return EX_OK;
		default: usage(stderr); return EX_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EX_USAGE;
	}
	const char *cmd = argv[optind];
	argc -= optind + 1;
	argv += optind + 1;
	if (strcmp(cmd, "attach") == 0)
		return cmd_attach(&o, argc, argv);
	if (strcmp(cmd, "detach") == 0)
		return cmd_detach(&o, argc, argv);
	if (strcmp(cmd, "list") == 0)
		return cmd_list(&o, argc, argv);
	if (strcmp(cmd, "resize") == 0)
		return cmd_resize(&o, argc, argv);
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return EX_OK;
	}
	return fail(EX_USAGE, "unknown command '%s' (attach, detach, list, resize; see --help)", cmd);
}
