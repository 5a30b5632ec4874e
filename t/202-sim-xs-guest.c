/*
 * Guest xenstore connections (DIR/xenstored.d/<domid>) through the real
 * libxenstore: Xen permission semantics enforced per domain, relative
 * paths, quotas, watch visibility, and the connection's end when the
 * domain goes away.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <xenstore.h>

#include "blkback/sim/guest.h"
#include "blkback/sim/sim.h"
#include "util/log.h"
#include "util/tap.h"
#include "simtest.h"

static bool rd_is(struct xs_handle *h, const char *path, const char *want)
{
	unsigned len;
	char *v = xs_read(h, XBT_NULL, path, &len);
	bool r = v && strcmp(v, want) == 0;
	free(v);
	return r;
}

static int rd_errno(struct xs_handle *h, const char *path)
{
	unsigned len;
	errno = 0;
	char *v = xs_read(h, XBT_NULL, path, &len);
	free(v);
	return v ? 0 : errno;
}

static int wr_errno(struct xs_handle *h, const char *path, const char *v)
{
	errno = 0;
	return xs_write(h, XBT_NULL, path, v, (unsigned)strlen(v)) ? 0 : errno;
}

static bool perms(struct xs_handle *h, const char *path, const char *spec)
{
	struct xs_permissions p[4];
	unsigned n = 0;
	for (const char *s = spec; *s; n++) {
		p[n].perms = s[0] == 'r' ? XS_PERM_READ : s[0] == 'w' ? XS_PERM_WRITE :
			     s[0] == 'b' ? XS_PERM_READ | XS_PERM_WRITE : XS_PERM_NONE;
		p[n].id = (unsigned)strtoul(s + 1, (char **)&s, 10);
		while (*s == ' ')
			s++;
	}
	return xs_set_permissions(h, XBT_NULL, path, p, n);
}

/* Next watch event's path ("" on timeout). */
static char last_event[256];
static const char *next_event(struct xs_handle *h, int ms)
{
	struct pollfd p = { .fd = xs_fileno(h), .events = POLLIN };
	last_event[0] = '\0';
	if (poll(&p, 1, ms) != 1)
		return last_event;
	unsigned n;
	char **v = xs_read_watch(h, &n);
	if (v)
		snprintf(last_event, sizeof(last_event), "%s", v[XS_WATCH_PATH]);
	free(v);
	return last_event;
}

int main(void)
{
	char dir[64], err[256], path[128];
	struct sim *sim = simtest_start(dir, sizeof(dir), "202", 48);
	struct sim_guest *g3 = sim_guest_connect(dir, 3, "three", 4, 8, err, sizeof(err));
	struct sim_guest *g4 = sim_guest_connect(dir, 4, "four", 4, 8, err, sizeof(err));
	if (!g3 || !g4)
		bail_out(err);
	ok(sim_guest_connect(dir, 3, "again", 4, 8, err, sizeof(err)) == NULL,
	   "a second domain 3 is refused");
	snprintf(path, sizeof(path), "%s/xenstored", dir);
	setenv("XENSTORED_PATH", path, 1);
	struct xs_handle *h0 = xs_open(0);
	struct xs_handle *h3 = sim_guest_xs_open(g3);
	struct xs_handle *h4 = sim_guest_xs_open(g4);
	if (!h0 || !h3 || !h4)
		bail_out("xs_open");
	ok(strstr(sim_guest_xenstore_path(g3), "/xenstored.d/3") != NULL, "guest socket path");

	/* What registration laid out. */
	ok(rd_is(h3, "/local/domain/3/name", "three"), "guest reads its own name");
	ok(rd_is(h3, "name", "three"), "relative path resolves to its domain");
	ok(rd_is(h3, "domid", "3"), "and its domid");
	is_int(wr_errno(h3, "name", "evil"), EACCES, "cannot overwrite its name (dom0-owned)");
	is_int(rd_errno(h3, "/local/domain/0/name"), EACCES, "cannot read dom0's nodes");
	is_int(wr_errno(h3, "/vbdfs", "x"), EACCES, "cannot create at the root");
	is_int(rd_errno(h4, "/local/domain/3/name"), EACCES, "dom4 cannot read dom3's nodes");
	is_int(wr_errno(h3, "/local/domain/4/data/x", "x"), EACCES, "dom3 cannot write dom4's data");

	/* The guest owns data/ and what it creates there. */
	is_int(wr_errno(h3, "data/foo", "bar"), 0, "guest writes under its data/");
	ok(rd_is(h0, "/local/domain/3/data/foo", "bar"), "dom0 reads it");
	unsigned n;
	struct xs_permissions *p = xs_get_permissions(h0, XBT_NULL, "/local/domain/3/data/foo", &n);
	ok(p && p[0].id == 3 && p[0].perms == XS_PERM_NONE, "the guest owns its new node");
	free(p);
	is_int(rd_errno(h4, "/local/domain/3/data/foo"), EACCES, "another guest cannot read it");
	ok(perms(h3, "data/foo", "n3 r4"), "owner grants dom4 read");
	ok(rd_is(h4, "/local/domain/3/data/foo", "bar"), "now dom4 reads it");
	is_int(wr_errno(h4, "/local/domain/3/data/foo", "x"), EACCES, "but cannot write it");
	errno = 0;
	ok(!perms(h3, "data/foo", "n4") && errno == EPERM, "a guest cannot give its node away");
	errno = 0;
	ok(!perms(h4, "/local/domain/3/data/foo", "b4") && errno == EACCES,
	   "a non-owner cannot change permissions");

	/* Device directories as a toolstack writes them. */
	xs_write(h0, XBT_NULL, "/local/domain/0/backend/vbd/3/51712/state", "1", 1);
	perms(h0, "/local/domain/0/backend/vbd/3/51712", "n0 r3");
	perms(h0, "/local/domain/0/backend/vbd/3/51712/state", "n0 r3");
	xs_write(h0, XBT_NULL, "/local/domain/3/device/vbd/51712/state", "1", 1);
	perms(h0, "/local/domain/3/device/vbd/51712", "n3 r0");
	perms(h0, "/local/domain/3/device/vbd/51712/state", "n3 r0");
	ok(rd_is(h3, "/local/domain/0/backend/vbd/3/51712/state", "1"), "frontend reads its backend");
	is_int(wr_errno(h3, "/local/domain/0/backend/vbd/3/51712/state", "4"), EACCES,
	       "but cannot write it");
	is_int(rd_errno(h4, "/local/domain/0/backend/vbd/3/51712/state"), EACCES,
	       "another guest cannot read it");
	is_int(wr_errno(h3, "device/vbd/51712/state", "3"), 0, "frontend writes its state");
	is_int(wr_errno(h3, "device/vbd/51712/ring-ref", "8"), 0, "and creates ring-ref");
	is_int(wr_errno(h4, "/local/domain/3/device/vbd/51712/state", "6"), EACCES,
	       "another guest cannot write the frontend's nodes");
	ok(rd_is(h0, "/local/domain/3/device/vbd/51712/ring-ref", "8"), "backend reads ring-ref");

	/* Limits. */
	char big[3000];
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	is_int(wr_errno(h3, "data/big", big), ENOSPC, "a guest value over 2048 bytes: ENOSPC");
	is_int(wr_errno(h0, "/vbdfs/big", big), 0, "dom0 may write it");
	int e = 0, i;
	for (i = 0; i < 1100 && !e; i++) {
		char key[32];
		snprintf(key, sizeof(key), "data/q/%d", i);
		e = wr_errno(h3, key, "1");
	}
	ok(e == ENOSPC && i > 900 && i <= 1000, "node quota: ENOSPC near 1000 nodes");
	ok(xs_rm(h3, XBT_NULL, "data/q"), "removing them frees the quota");
	is_int(wr_errno(h3, "data/after", "1"), 0, "writes work again");
	xs_transaction_t t[11];
	for (i = 0; i < 11; i++)
		t[i] = xs_transaction_start(h3);
	ok(t[9] != XBT_NULL && t[10] == XBT_NULL && errno == ENOSPC,
	   "the 11th open transaction of a guest: ENOSPC");
	struct xs_handle *h3b = xs_open(0); /* XENSTORED_PATH is dom4's now */
	setenv("XENSTORED_PATH", sim_guest_xenstore_path(g3), 1);
	struct xs_handle *h3c = xs_open(0);
	errno = 0;
	ok(h3b && h3c && xs_transaction_start(h3c) == XBT_NULL && errno == ENOSPC,
	   "another connection of the same guest cannot open more");
	xs_transaction_t t4 = h3b ? xs_transaction_start(h3b) : XBT_NULL;
	ok(t4 != XBT_NULL, "another guest still can");
	if (h3b) {
		xs_transaction_end(h3b, t4, true);
		xs_close(h3b);
	}
	if (h3c)
		xs_close(h3c);
	for (i = 0; i < 10; i++)
		xs_transaction_end(h3, t[i], true);
	errno = 0;
	ok(!xs_introduce_domain(h3, 9, 0, 1) && errno == EACCES, "a guest cannot introduce domains");

	/* Watches: a guest only hears about nodes it may read; relative paths. */
	ok(xs_watch(h4, "/local/domain/3", "w4"), "dom4 watches dom3's directory");
	is_str(next_event(h4, 20000), "/local/domain/3", "initial event");
	ok(xs_watch(h3, "data", "rel"), "dom3 watches a relative path");
	is_str(next_event(h3, 20000), "data", "initial event, relative");
	wr_errno(h3, "data/secret", "s");
	is_str(next_event(h3, 20000), "data/secret", "change event reported relative");
	wr_errno(h3, "data/foo", "visible");
	is_str(next_event(h4, 20000), "/local/domain/3/data/foo",
	       "dom4 hears of the node it may read, not of data/secret");

	/* 128 watches per guest, whatever the number of its connections. */
	int added = 0;
	for (i = 0; i < 200; i++) {
		char wp[64];
		snprintf(wp, sizeof(wp), "/local/domain/4/data/w%d", i);
		if (!xs_watch(h4, wp, "many"))
			break;
		added++;
	}
	ok(added == 127 && errno == E2BIG, "the 129th watch of a guest: E2BIG");
	setenv("XENSTORED_PATH", sim_guest_xenstore_path(g4), 1);
	struct xs_handle *h4b = xs_open(0);
	errno = 0;
	ok(h4b && !xs_watch(h4b, "data", "other") && errno == E2BIG,
	   "its other connection cannot add more");
	if (h4b)
		xs_close(h4b);

	/* A guest cannot open connections without end. */
	int fds[40], refused = 0;
	for (i = 0; i < 40; i++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sim_guest_xenstore_path(g4));
		fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0)
			bail_out("connect");
	}
	for (i = 0; i < 40; i++) {
		/* A request each: accepted ones answer, refused ones hang up. */
		struct { uint32_t type, req_id, tx_id, len; } hdr = { 2 /* XS_READ */, 1, 0, 5 };
		char buf[64];
		if (write(fds[i], &hdr, sizeof(hdr)) != sizeof(hdr) || write(fds[i], "name", 5) != 5 ||
		    read(fds[i], buf, sizeof(buf)) <= 0)
			refused++;
	}
	/* h4 is open; h4b was just closed and may not be reaped yet. */
	ok(refused == 40 - 31 || refused == 40 - 30, "connections beyond 32 per guest are refused");
	if (refused != 9 && refused != 10)
		diag("refused %d", refused);
	for (i = 0; i < 40; i++)
		close(fds[i]);

	/* The domain goes: its connections end, its directory goes. */
	xs_watch(h0, "@releaseDomain", "rel");
	is_str(next_event(h0, 20000), "@releaseDomain", "dom0 watches @releaseDomain");
	sim_guest_disconnect(g3);
	is_str(next_event(h0, 20000), "@releaseDomain", "fires when dom3 disconnects");
	is_int(rd_errno(h0, "/local/domain/3/name"), ENOENT, "dom3's directory is gone");
	ok(rd_errno(h3, "name") != 0, "dom3's xenstore connection is closed");

	xs_close(h0);
	xs_close(h3);
	xs_close(h4);
	sim_guest_disconnect(g4);
	return simtest_end(sim, dir);
}
