/*
 * Many guest processes at once: each registers, runs xenstore transactions
 * on its own nodes concurrently with the others (retrying on EAGAIN, which
 * unrelated guests must not cause endlessly), grants a page and opens an
 * event channel; the backend serves them all through hv_sim; killing half
 * of them removes exactly those domains.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xenstore.h>

#include "blkback/hv.h"
#include "blkback/sim/guest.h"
#include "blkback/sim/sim.h"
#include "util/log.h"
#include "util/tap.h"

#define N 24
#define BASE 100
#define ROUNDS 20

struct report {
	int idx, gref, port, retries, ok;
};

static char dir[64];
static int go[2], rep[2];

static void child(int idx)
{
	char err[256], path[64], val[32];
	struct report r = { .idx = idx };
	if (read(go[0], val, 1) != 1)
		_exit(1);
	struct sim_guest *g = sim_guest_connect(dir, (uint16_t)(BASE + idx), "many", 4, 16, err,
						sizeof(err));
	struct xs_handle *xs = g ? sim_guest_xs_open(g) : NULL;
	r.ok = xs != NULL;
	for (int round = 0; r.ok && round < ROUNDS; round++) {
		for (int tries = 0;; tries++) {
			xs_transaction_t t = xs_transaction_start(xs);
			snprintf(val, sizeof(val), "%d", round);
			bool w = t && xs_write(xs, t, "data/round", val, (unsigned)strlen(val));
			snprintf(path, sizeof(path), "data/k%d", round);
			w = w && xs_write(xs, t, path, val, (unsigned)strlen(val));
			if (w && xs_transaction_end(xs, t, false))
				break;
			if (!w || errno != EAGAIN || tries > 50) {
				r.ok = 0;
				break;
			}
			r.retries++;
		}
	}
	if (r.ok) {
		memset(sim_guest_page(g, 2), 0x40 + idx, 4096);
		r.gref = sim_guest_grant(g, 0, 2, true);
		r.port = sim_guest_evtchn_alloc(g, 0);
		r.ok = r.gref > 0 && r.port > 0;
	}
	if (write(rep[1], &r, sizeof(r)) != sizeof(r))
		_exit(1);
	pause(); /* until killed */
	_exit(0);
}

int main(void)
{
	char err[256];
	pid_t pids[N];
	struct report reps[N];
	snprintf(dir, sizeof(dir), "/tmp/vbdfs-212.XXXXXX");
	if (!mkdtemp(dir) || pipe(go) < 0 || pipe(rep) < 0)
		bail_out("setup");
	for (int i = 0; i < N; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			child(i);
	}
	signal(SIGPIPE, SIG_IGN);
	log_init("212", VLOG_ERR, false);
	plan(9);
	struct sim *sim = sim_start(dir, err, sizeof(err));
	if (!sim)
		bail_out(err);
	char path[128];
	snprintf(path, sizeof(path), "%s/xenstored", dir);
	setenv("XENSTORED_PATH", path, 1);
	struct xs_handle *xs = xs_open(0);
	struct hv *hv = hv_open_sim(dir, err, sizeof(err));
	if (!xs || !hv)
		bail_out("backend");

	char gobuf[N];
	memset(gobuf, 'g', sizeof(gobuf));
	if (write(go[1], gobuf, N) != N)
		bail_out("go");
	int good = 0, retries = 0;
	for (int i = 0; i < N; i++) {
		struct report r;
		if (read(rep[0], &r, sizeof(r)) != sizeof(r) || r.idx < 0 || r.idx >= N)
			bail_out("report");
		reps[r.idx] = r;
		good += r.ok;
		retries += r.retries;
	}
	is_int(good, N, "every guest registered and committed all its transactions");
	diag("%d EAGAIN retries over %d transactions", retries, N * ROUNDS);
	int right = 0;
	for (int i = 0; i < N; i++) {
		unsigned len;
		snprintf(path, sizeof(path), "/local/domain/%d/data/round", BASE + i);
		char *v = xs_read(xs, XBT_NULL, path, &len);
		right += v && atoi(v) == ROUNDS - 1;
		free(v);
	}
	is_int(right, N, "each guest's last write is in the store");

	int copied = 0, bound = 0;
	struct hv_evtchn *ch[N];
	for (int i = 0; i < N; i++) {
		char buf[4096];
		struct hv_copy_seg s = { .gref = (hv_gref_t)reps[i].gref, .len = 4096, .local = buf };
		copied += hv->ops->grant_copy(hv, (uint16_t)(BASE + i), &s, 1) == 0 &&
			  buf[0] == 0x40 + i && buf[4095] == 0x40 + i;
		int e;
		ch[i] = hv->ops->evtchn_bind(hv, (uint16_t)(BASE + i), (uint32_t)reps[i].port, &e);
		bound += ch[i] != NULL;
	}
	is_int(copied, N, "the backend copied every guest's page, each its own");
	is_int(bound, N, "and bound every guest's port");

	/* Kill the even ones. */
	for (int i = 0; i < N; i += 2) {
		kill(pids[i], SIGKILL);
		waitpid(pids[i], NULL, 0);
	}
	int gone = 0, alive = 0;
	for (int tries = 0; tries < 400 && gone < N / 2; tries++) {
		gone = 0;
		for (int i = 0; i < N; i += 2)
			gone += !xs_is_domain_introduced(xs, (unsigned)(BASE + i));
		if (gone < N / 2)
			usleep(50000);
	}
	for (int i = 1; i < N; i += 2)
		alive += xs_is_domain_introduced(xs, (unsigned)(BASE + i));
	is_int(gone, N / 2, "the killed guests' domains are gone");
	is_int(alive, N / 2, "the others are alive");
	unsigned nd;
	char **d = xs_directory(xs, XBT_NULL, "/local/domain", &nd);
	is_int(nd, 1 + N / 2, "/local/domain lists dom0 and the survivors");
	free(d);
	int notified = 0;
	for (int i = 1; i < N; i += 2)
		notified += hv->ops->evtchn_notify(ch[i]) == 0;
	is_int(notified, N / 2, "survivors' channels still work");
	int e = 0;
	ok(hv->ops->evtchn_bind(hv, BASE, (uint32_t)reps[0].port, &e) == NULL && e == ESRCH,
	   "a dead guest's port cannot be bound");

	for (int i = 0; i < N; i++)
		if (ch[i])
			hv->ops->evtchn_unbind(ch[i]);
	for (int i = 1; i < N; i += 2) {
		kill(pids[i], SIGKILL);
		waitpid(pids[i], NULL, 0);
	}
	hv_close(hv);
	xs_close(xs);
	sim_stop(sim);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	(void)!system(path);
	return done_testing();
}
