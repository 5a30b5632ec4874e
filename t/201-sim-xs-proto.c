/*
 * The simulator's xenstored through the real libxenstore client:
 * transactions (isolation, own writes, EAGAIN on conflict), watches, error
 * names, and raw-socket abuse (garbage, oversized messages, a client that
 * never reads) that must not hurt the server.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <xenstore.h>
#include <xen/io/xs_wire.h>

#include "blkback/sim/sim.h"
#include "util/log.h"
#include "util/tap.h"
#include "simtest.h"

static char dir[64];

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/xenstored", dir);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		bail_out("cannot connect to the simulator");
	return fd;
}

static char *rd(struct xs_handle *h, xs_transaction_t t, const char *path)
{
	unsigned len;
	return xs_read(h, t, path, &len);
}

static bool rd_is(struct xs_handle *h, xs_transaction_t t, const char *path, const char *want)
{
	char *v = rd(h, t, path);
	bool r = v && strcmp(v, want) == 0;
	free(v);
	return r;
}

/* Send one raw request and read the reply header + payload. */
static int raw_call(int fd, uint32_t type, const void *payload, uint32_t len, char *out,
		    size_t outlen, struct xsd_sockmsg *rh)
{
	struct xsd_sockmsg h = { .type = type, .req_id = 77, .len = len };
	if (write(fd, &h, sizeof(h)) != sizeof(h) || (len && write(fd, payload, len) != len))
		return -1;
	for (;;) {
		if (recv(fd, rh, sizeof(*rh), MSG_WAITALL) != sizeof(*rh) || rh->len > outlen)
			return -1;
		if (rh->len && recv(fd, out, rh->len, MSG_WAITALL) != (ssize_t)rh->len)
			return -1;
		if (rh->type != XS_WATCH_EVENT)
			return 0;
	}
}

static void test_transactions(struct xs_handle *h, struct xs_handle *h2)
{
	ok(xs_write(h, XBT_NULL, "/t/x", "0", 1), "plain write");

	xs_transaction_t t = xs_transaction_start(h);
	ok(t != XBT_NULL, "transaction started");
	ok(xs_write(h, t, "/t/x", "1", 1), "write in transaction");
	ok(rd_is(h, t, "/t/x", "1"), "transaction sees its own write");
	ok(rd_is(h2, XBT_NULL, "/t/x", "0"), "others do not see it before commit");
	ok(xs_write(h, t, "/t/new/deep", "d", 1), "create in transaction");
	ok(!rd(h2, XBT_NULL, "/t/new/deep") && errno == ENOENT, "new node invisible outside");
	ok(xs_transaction_end(h, t, false), "commit");
	ok(rd_is(h2, XBT_NULL, "/t/x", "1") && rd_is(h2, XBT_NULL, "/t/new/deep", "d"),
	   "committed writes visible");

	/* Two transactions writing: the second to commit conflicts. */
	xs_transaction_t a = xs_transaction_start(h), b = xs_transaction_start(h2);
	ok(a && b, "two transactions");
	xs_write(h, a, "/t/a", "a", 1);
	xs_write(h2, b, "/t/b", "b", 1);
	ok(xs_transaction_end(h, a, false), "first commit succeeds");
	errno = 0;
	ok(!xs_transaction_end(h2, b, false), "second commit fails");
	is_int(errno, EAGAIN, "with EAGAIN");
	ok(!rd(h, XBT_NULL, "/t/b"), "failed transaction left nothing");

	/* A plain write meanwhile conflicts too. */
	t = xs_transaction_start(h);
	xs_write(h, t, "/t/c", "c", 1);
	xs_write(h2, XBT_NULL, "/t/other", "o", 1);
	errno = 0;
	ok(!xs_transaction_end(h, t, false) && errno == EAGAIN, "plain write meanwhile: EAGAIN");

	/* Retry loop as clients do. */
	int tries = 0;
	for (;;) {
		tries++;
		t = xs_transaction_start(h);
		free(rd(h, t, "/t/c"));
		xs_write(h, t, "/t/c", "c2", 2);
		if (tries == 1)
			xs_write(h2, XBT_NULL, "/t/c", "p", 1);
		if (xs_transaction_end(h, t, false))
			break;
		if (errno != EAGAIN || tries > 5)
			break;
	}
	ok(tries == 2 && rd_is(h2, XBT_NULL, "/t/c", "c2"), "retry after EAGAIN commits");

	/* Conflicts are per node: disjoint transactions both commit. */
	xs_write(h, XBT_NULL, "/t/d1", "0", 1);
	xs_write(h, XBT_NULL, "/t/d2", "0", 1);
	a = xs_transaction_start(h);
	b = xs_transaction_start(h2);
	free(rd(h, a, "/t/d1"));
	xs_write(h, a, "/t/d1", "a", 1);
	xs_write(h2, b, "/t/d2", "b", 1);
	xs_write(h2, XBT_NULL, "/t/unrelated", "u", 1);
	ok(xs_transaction_end(h2, b, false), "a transaction commits despite unrelated writes");
	ok(xs_transaction_end(h, a, false), "so does a disjoint concurrent one");
	ok(rd_is(h, XBT_NULL, "/t/d1", "a") && rd_is(h, XBT_NULL, "/t/d2", "b"), "both landed");
	/* A node read in a transaction and changed meanwhile is a conflict. */
	a = xs_transaction_start(h);
	free(rd(h, a, "/t/d2"));
	xs_write(h, a, "/t/d1", "from-read", 9);
	xs_write(h2, XBT_NULL, "/t/d2", "changed", 7);
	errno = 0;
	ok(!xs_transaction_end(h, a, false) && errno == EAGAIN, "what it read changed: EAGAIN");
	ok(rd_is(h, XBT_NULL, "/t/d1", "a"), "and nothing of it landed");
	/* Reading a missing node, which then appears, is a conflict too. */
	a = xs_transaction_start(h);
	free(rd(h, a, "/t/appears"));
	xs_write(h, a, "/t/d1", "x", 1);
	xs_write(h2, XBT_NULL, "/t/appears", "1", 1);
	errno = 0;
	ok(!xs_transaction_end(h, a, false) && errno == EAGAIN, "a node it found missing appeared: EAGAIN");
	/* Creating below a removed-and-recreated directory replays in order. */
	xs_write(h, XBT_NULL, "/t/re/old", "o", 1);
	a = xs_transaction_start(h);
	xs_rm(h, a, "/t/re");
	xs_write(h, a, "/t/re/new", "n", 1);
	ok(xs_transaction_end(h, a, false), "rm + recreate commits");
	unsigned nn;
	char **dd = xs_directory(h, XBT_NULL, "/t/re", &nn);
	ok(dd && nn == 1 && strcmp(dd[0], "new") == 0, "old child gone, new child there");
	free(dd);
	/* The rewrite pattern: remove stale keys, write them anew (same names). */
	a = xs_transaction_start(h);
	xs_rm(h, a, "/t/re");
	xs_write(h, a, "/t/re/new", "again", 5);
	ok(xs_transaction_end(h, a, false), "rm + rewrite of the same keys commits");
	ok(rd_is(h, XBT_NULL, "/t/re/new", "again"), "with the new value");

	/* Abort discards; a read-only transaction always commits. */
	t = xs_transaction_start(h);
	xs_write(h, t, "/t/x", "aborted", 7);
	ok(xs_transaction_end(h, t, true), "abort");
	ok(rd_is(h, XBT_NULL, "/t/x", "1"), "aborted write discarded");
	t = xs_transaction_start(h);
	free(rd(h, t, "/t/x"));
	xs_write(h2, XBT_NULL, "/t/y", "y", 1);
	ok(xs_transaction_end(h, t, false), "read-only transaction commits anyway");

	/* rm inside a transaction. */
	t = xs_transaction_start(h);
	ok(xs_rm(h, t, "/t/new"), "rm in transaction");
	ok(rd_is(h2, XBT_NULL, "/t/new/deep", "d"), "rm invisible before commit");
	ok(xs_transaction_end(h, t, false), "commit rm");
	ok(!rd(h2, XBT_NULL, "/t/new/deep"), "rm visible after commit");

	errno = 0;
	ok(!xs_write(h, 12345, "/t/z", "z", 1) && errno == ENOENT, "unknown transaction: ENOENT");
}

static bool wait_watch(struct xs_handle *h, const char *path, const char *token)
{
	struct pollfd p = { .fd = xs_fileno(h), .events = POLLIN };
	for (;;) {
		if (poll(&p, 1, 20000) <= 0)
			return false;
		unsigned n;
		char **v = xs_read_watch(h, &n);
		if (!v)
			return false;
		bool match = strcmp(v[XS_WATCH_PATH], path) == 0 &&
			     strcmp(v[XS_WATCH_TOKEN], token) == 0;
		free(v);
		if (match)
			return true;
	}
}

static void test_watches(struct xs_handle *h, struct xs_handle *h2)
{
	ok(xs_watch(h, "/w", "tok"), "watch");
	ok(wait_watch(h, "/w", "tok"), "initial event fires at once");
	xs_write(h2, XBT_NULL, "/w/a/b", "1", 1);
	ok(wait_watch(h, "/w/a/b", "tok"), "event for a write below the watch");
	xs_transaction_t t = xs_transaction_start(h2);
	xs_write(h2, t, "/w/txn", "1", 1);
	xs_transaction_end(h2, t, false);
	ok(wait_watch(h, "/w/txn", "tok"), "event for a committed transaction's write");
	xs_rm(h2, XBT_NULL, "/w/a");
	ok(wait_watch(h, "/w/a", "tok"), "event for a removal");
	ok(xs_watch(h, "/w/a/b", "deep"), "watch below a node");
	ok(wait_watch(h, "/w/a/b", "deep"), "its initial event");
	xs_write(h2, XBT_NULL, "/w/a/b", "2", 1);
	ok(wait_watch(h, "/w/a/b", "deep"), "event at the deep watch");
	xs_rm(h2, XBT_NULL, "/w");
	ok(wait_watch(h, "/w/a/b", "deep"), "removing an ancestor fires the watch below it");
	errno = 0;
	ok(!xs_watch(h, "/w", "tok") && errno == EEXIST, "same watch twice: EEXIST");
	ok(xs_unwatch(h, "/w", "tok"), "unwatch");
	errno = 0;
	ok(!xs_unwatch(h, "/w", "tok") && errno == ENOENT, "unwatch again: ENOENT");
	ok(xs_watch(h, "@releaseDomain", "rel"), "special watch @releaseDomain");
	ok(wait_watch(h, "@releaseDomain", "rel"), "its initial event");
}

static void test_errors(struct xs_handle *h)
{
	unsigned n;
	char **d;
	errno = 0;
	ok(!rd(h, XBT_NULL, "/no/such") && errno == ENOENT, "read missing: ENOENT");
	errno = 0;
	ok(!xs_write(h, XBT_NULL, "/bad//path", "x", 1) && errno == EINVAL, "bad path: EINVAL");
	errno = 0;
	ok(!xs_rm(h, XBT_NULL, "/") && errno == EINVAL, "rm /: EINVAL");
	ok(xs_mkdir(h, XBT_NULL, "/m/k"), "mkdir");
	ok(xs_mkdir(h, XBT_NULL, "/m/k"), "mkdir of an existing node is fine");
	d = xs_directory(h, XBT_NULL, "/m", &n);
	ok(d && n == 1 && strcmp(d[0], "k") == 0, "directory");
	free(d);
	char *dp = xs_get_domain_path(h, 7);
	is_str(dp, "/local/domain/7", "get_domain_path");
	free(dp);
	ok(xs_is_domain_introduced(h, 0), "dom0 is introduced");
	ok(!xs_is_domain_introduced(h, 9), "dom9 is not");
	struct xs_permissions p[2] = { { .id = 0, .perms = XS_PERM_NONE },
				       { .id = 4, .perms = XS_PERM_READ | XS_PERM_WRITE } };
	ok(xs_set_permissions(h, XBT_NULL, "/m/k", p, 2), "set_permissions");
	struct xs_permissions *g = xs_get_permissions(h, XBT_NULL, "/m/k", &n);
	ok(g && n == 2 && g[1].id == 4 && g[1].perms == (XS_PERM_READ | XS_PERM_WRITE),
	   "get_permissions round trip");
	free(g);
}

static void test_garbage(struct xs_handle *h)
{
	char out[XENSTORE_PAYLOAD_MAX + 16];
	struct xsd_sockmsg rh;
	int fd = raw_connect();

	ok(raw_call(fd, 9999, "", 0, out, sizeof(out), &rh) == 0 && rh.type == XS_ERROR &&
	   strcmp(out, "EINVAL") == 0 && rh.req_id == 77, "unknown type: EINVAL, req_id echoed");
	ok(raw_call(fd, XS_READ, "/local", 6, out, sizeof(out), &rh) == 0 && rh.type == XS_ERROR,
	   "unterminated path: error");
	ok(raw_call(fd, XS_READ, "/local/domain/0/name\0junk", 26, out, sizeof(out), &rh) == 0 &&
	   rh.type == XS_ERROR, "two strings where one is expected: error");
	ok(raw_call(fd, XS_TRANSACTION_END, "X", 2, out, sizeof(out), &rh) == 0 &&
	   rh.type == XS_ERROR, "bad transaction end: error");
	ok(raw_call(fd, XS_SET_PERMS, "/m/k\0q1\0", 8, out, sizeof(out), &rh) == 0 &&
	   rh.type == XS_ERROR && strcmp(out, "EINVAL") == 0, "bad permission string: EINVAL");
	ok(raw_call(fd, XS_DIRECTORY_PART, "/m\0" "5\0", 5, out, sizeof(out), &rh) == 0 &&
	   rh.type == XS_ERROR, "directory part at a bad offset: error");
	close(fd);

	/* Random bytes, then an oversized header: the server drops the client. */
	srand(42);
	for (int round = 0; round < 20; round++) {
		fd = raw_connect();
		char junk[2048];
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (char)rand();
		if (round % 2) /* keep lengths small so more requests parse */
			for (size_t i = 12; i < sizeof(junk); i += 16)
				junk[i + 1] = junk[i + 2] = junk[i + 3] = 0;
		(void)!write(fd, junk, sizeof(junk));
		close(fd);
	}
	fd = raw_connect();
	struct xsd_sockmsg big = { .type = XS_READ, .len = 1u << 30 };
	(void)!write(fd, &big, sizeof(big));
	ok(recv(fd, out, 1, 0) == 0, "oversized message: connection closed");
	close(fd);
	ok(rd_is(h, XBT_NULL, "/local/domain/0/name", "Domain-0"), "server fine after garbage");

	/* A client that watches and never reads: bounded, server stays responsive. */
	fd = raw_connect();
	struct xsd_sockmsg w = { .type = XS_WATCH, .len = 5 };
	(void)!write(fd, &w, sizeof(w));
	(void)!write(fd, "/s\0t\0", 5);
	char val[1000];
	memset(val, 'v', sizeof(val));
	for (int i = 0; i < 3000; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/s/n%d", i % 1500);
		if (!xs_write(h, XBT_NULL, path, val, sizeof(val)))
			break;
	}
	ok(rd_is(h, XBT_NULL, "/local/domain/0/name", "Domain-0"),
	   "server responsive while a client ignores 3000 events");
	close(fd);
}

int main(void)
{
	struct sim *sim = simtest_start(dir, sizeof(dir), "201", 68);
	char path[128];
	snprintf(path, sizeof(path), "%s/xenstored", dir);
	setenv("XENSTORED_PATH", path, 1);
	struct xs_handle *h = xs_open(0), *h2 = xs_open(0);
	if (!h || !h2)
		bail_out("xs_open");

	test_transactions(h, h2);
	test_watches(h, h2);
	test_errors(h);
	test_garbage(h);

	xs_close(h);
	xs_close(h2);
	return simtest_end(sim, dir);
}
