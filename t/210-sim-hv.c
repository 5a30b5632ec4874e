/*
 * Grants and event channels between a real guest process (sim_guest) and
 * the backend transport hv_sim: copies with Xen's checks, maps of several
 * non-contiguous pages, notifications both ways, and the domain vanishing
 * when the guest process is killed.
 */
#include <errno.h>
#include <stdint.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xen/grant_table.h>
#include <xenstore.h>

#include "blkback/hv.h"
#include "blkback/sim/guest.h"
#include "blkback/sim/sim.h"
#include "util/log.h"
#include "util/tap.h"

#define DOMID 5
#define PAGES 16
#define GRANTS 32

struct layout {
	int rw, ro, wrongdom, badframe, ended, m[3], port;
};

static char dir[64];
static int cmd[2], rep[2];

static void child(void)
{
	char go, err[256];
	struct layout l;
	close(cmd[1]);
	close(rep[0]);
	if (read(cmd[0], &go, 1) != 1)
		_exit(1);
	struct sim_guest *g = sim_guest_connect(dir, DOMID, "guest5", PAGES, GRANTS, err, sizeof(err));
	if (!g) {
		fprintf(stderr, "child: %s\n", err);
		_exit(1);
	}
	for (uint32_t i = 0; i < PAGES; i++)
		memset(sim_guest_page(g, i), 0x10 + (int)i, 4096);
	l.rw = sim_guest_grant(g, 0, 1, false);
	l.ro = sim_guest_grant(g, 0, 2, true);
	l.wrongdom = sim_guest_grant(g, 7, 3, false);
	l.badframe = 20;
	sim_guest_set_grant_raw(g, 20, GTF_permit_access, 0, 1000);
	l.ended = sim_guest_grant(g, 0, 3, false);
	l.m[0] = sim_guest_grant(g, 0, 4, false);
	l.m[1] = sim_guest_grant(g, 0, 6, false);
	l.m[2] = sim_guest_grant(g, 0, 8, false);
	sim_guest_end_grant(g, (uint32_t)l.ended); /* after, so no later grant reuses it */
	l.port = sim_guest_evtchn_alloc(g, 0);
	if (write(rep[1], &l, sizeof(l)) != sizeof(l))
		_exit(1);
	/* Wait for the backend's kick, check what it wrote, kick back. */
	struct pollfd p = { .fd = sim_guest_evtchn_fd(g, (uint32_t)l.port), .events = POLLIN };
	char res = 'T';
	if (poll(&p, 1, 20000) != 1)
		res = 'P';
	else if (sim_guest_evtchn_ack(g, (uint32_t)l.port) != 1)
		res = 'A';
	else if (((char *)sim_guest_page(g, 1))[99] != 'Z' || ((char *)sim_guest_page(g, 1))[100] != 0x11)
		res = 'C';
	else if (((char *)sim_guest_page(g, 6))[4095] != 'M')
		res = 'M';
	if (write(rep[1], &res, 1) != 1)
		_exit(1);
	sim_guest_evtchn_notify(g, (uint32_t)l.port);
	while (read(cmd[0], &go, 1) > 0)
		; /* live until killed */
	_exit(0);
}

static bool wait_watch(struct xs_handle *h, const char *path)
{
	struct pollfd p = { .fd = xs_fileno(h), .events = POLLIN };
	for (;;) {
		if (poll(&p, 1, 20000) <= 0)
			return false;
		unsigned n;
		char **v = xs_read_watch(h, &n);
		if (!v)
			return false;
		bool match = strcmp(v[XS_WATCH_PATH], path) == 0;
		free(v);
		if (match)
			return true;
	}
}

static struct hv_copy_seg seg(int gref, uint16_t off, uint16_t len, void *buf, bool to_guest)
{
	return (struct hv_copy_seg){ .gref = (hv_gref_t)gref, .offset = off, .len = len,
				     .local = buf, .to_guest = to_guest, .status = 99 };
}

int main(void)
{
	char err[256], buf[4096];
	struct layout l;
	snprintf(dir, sizeof(dir), "/tmp/vbdfs-210.XXXXXX");
	if (!mkdtemp(dir))
		bail_out("mkdtemp");
	if (pipe(cmd) < 0 || pipe(rep) < 0)
		bail_out("pipe");
	/* Fork before any thread exists; the child waits for the simulator. */
	pid_t pid = fork();
	if (pid == 0)
		child();
	close(cmd[0]);
	close(rep[1]);
	signal(SIGPIPE, SIG_IGN);
	log_init("210", VLOG_ERR, false);
	plan(40);

	struct sim *sim = sim_start(dir, err, sizeof(err));
	if (!sim)
		bail_out(err);
	char path[128];
	snprintf(path, sizeof(path), "%s/xenstored", dir);
	setenv("XENSTORED_PATH", path, 1);
	struct xs_handle *xs = xs_open(0);
	if (!xs || !xs_watch(xs, "@releaseDomain", "rel") || !wait_watch(xs, "@releaseDomain"))
		bail_out("xenstore");
	struct hv *hv = hv_open_sim(dir, err, sizeof(err));
	if (!hv)
		bail_out(err);
	is_str(hv->ops->name, "sim", "transport name");

	if (write(cmd[1], "g", 1) != 1 || read(rep[0], &l, sizeof(l)) != sizeof(l))
		bail_out("guest did not start");
	ok(l.rw > 0 && l.ro > 0 && l.m[2] > 0 && l.port > 0, "guest granted pages, allocated a port");
	unsigned len;
	char *name = xs_read(xs, XBT_NULL, "/local/domain/5/name", &len);
	is_str(name, "guest5", "registration wrote /local/domain/5/name");
	free(name);
	struct stat st;
	snprintf(path, sizeof(path), "%s/xenstored.d/5", dir);
	ok(stat(path, &st) == 0 && S_ISSOCK(st.st_mode), "domain 5 has its xenstore socket");

	/* Good copies. */
	struct hv_copy_seg s[8];
	memset(buf, 0, sizeof(buf));
	s[0] = seg(l.rw, 0, 4096, buf, false);
	is_int(hv->ops->grant_copy(hv, DOMID, s, 1), 0, "copy a whole page from the guest");
	ok(s[0].status == 0 && buf[0] == 0x11 && buf[4095] == 0x11, "got the guest's bytes");
	memset(buf, 'Z', 100);
	s[0] = seg(l.rw, 0, 100, buf, true);
	is_int(hv->ops->grant_copy(hv, DOMID, s, 1), 0, "copy 100 bytes to the guest");
	s[0] = seg(l.ro, 512, 512, buf, false);
	is_int(hv->ops->grant_copy(hv, DOMID, s, 1), 0, "read a read-only grant");
	ok(buf[0] == 0x12 && buf[511] == 0x12, "read-only page contents");

	/* Bad grants fail their segment only. */
	char junk[4096];
	memset(junk, 'X', sizeof(junk));
	s[0] = seg(l.ro, 0, 16, junk, true);
	s[1] = seg(l.wrongdom, 0, 16, buf, false);
	s[2] = seg(l.badframe, 0, 16, buf, false);
	s[3] = seg(GRANTS + 100, 0, 16, buf, false);
	s[4] = seg(l.ended, 0, 16, buf, false);
	s[5] = seg(l.rw, 4000, 200, buf, false);
	s[6] = seg(l.rw, 200, 10, buf, false);
	s[7] = seg(0x7fffffff, 0, 1, buf, false);
	is_int(hv->ops->grant_copy(hv, DOMID, s, 8), -EIO, "a batch with bad grants: -EIO");
	ok(s[0].status < 0, "writing a read-only grant fails");
	ok(s[1].status < 0, "a grant for another domain fails");
	ok(s[2].status < 0, "a frame outside guest memory fails");
	ok(s[3].status < 0, "a gref beyond the table fails");
	ok(s[4].status < 0, "an ended grant fails");
	ok(s[5].status < 0, "offset + len beyond the page fails");
	is_int(s[6].status, 0, "the good segment in the same batch succeeds");
	ok(s[7].status < 0, "a huge gref fails");
	s[0] = seg(l.rw, 0, 1, buf, false);
	ok(hv->ops->grant_copy(hv, 9, s, 1) == -EIO && s[0].status < 0, "an unknown domain fails");

	/* Map three non-contiguous frames contiguously. */
	hv_gref_t refs[3] = { (hv_gref_t)l.m[0], (hv_gref_t)l.m[1], (hv_gref_t)l.m[2] };
	int e = 0;
	uint8_t *map = hv->ops->map(hv, DOMID, refs, 3, true, &e);
	ok(map != NULL, "map 3 grants");
	if (map) {
		ok(map[0] == 0x14 && map[4096] == 0x16 && map[8191] == 0x16 && map[8192] == 0x18,
		   "pages in grant order (frames 4, 6, 8)");
		map[4096 + 4095] = 'M';
		is_int(hv->ops->unmap(hv, map, 3), 0, "unmap");
	} else {
		skip(2, "no map");
	}
	hv_gref_t bad[2] = { (hv_gref_t)l.m[0], (hv_gref_t)l.ro };
	e = 0;
	ok(hv->ops->map(hv, DOMID, bad, 2, true, &e) == NULL && e == EPERM,
	   "mapping a read-only grant writable fails");
	uint8_t *rom = hv->ops->map(hv, DOMID, bad, 2, false, &e);
	ok(rom && rom[4096] == 0x12, "mapping it read-only works");
	if (rom)
		hv->ops->unmap(hv, rom, 2);
	hv_gref_t bad2[2] = { (hv_gref_t)l.m[0], (hv_gref_t)l.badframe };
	ok(hv->ops->map(hv, DOMID, bad2, 2, false, &e) == NULL, "a bad grant fails the whole map");

	/* Event channels. */
	e = 0;
	ok(hv->ops->evtchn_bind(hv, DOMID, 999, &e) == NULL && e != 0, "binding an unallocated port fails");
	struct hv_evtchn *ch = hv->ops->evtchn_bind(hv, DOMID, (uint32_t)l.port, &e);
	ok(ch != NULL, "bind the guest's port");
	e = 0;
	ok(hv->ops->evtchn_bind(hv, DOMID, (uint32_t)l.port, &e) == NULL && e != 0,
	   "binding it twice fails");
	if (!ch)
		bail_out("no event channel");
	is_int(hv->ops->evtchn_ack(ch), 0, "nothing pending yet");
	is_int(hv->ops->evtchn_notify(ch), 0, "notify the guest");
	char res = 0;
	ok(read(rep[0], &res, 1) == 1 && res == 'T', "guest saw the kick and the copied data");
	if (res != 'T')
		diag("guest reported %c", res);
	struct pollfd p = { .fd = hv->ops->evtchn_fd(ch), .events = POLLIN };
	is_int(poll(&p, 1, 20000), 1, "guest's kick makes the backend fd readable");
	is_int(hv->ops->evtchn_ack(ch), 1, "ack consumes it");
	is_int(hv->ops->evtchn_ack(ch), 0, "then nothing is pending");

	/* Kill the guest: its domain vanishes. */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ok(wait_watch(xs, "@releaseDomain"), "@releaseDomain fires");
	ok(!xs_read(xs, XBT_NULL, "/local/domain/5", &len) && errno == ENOENT, "/local/domain/5 removed");
	ok(!xs_is_domain_introduced(xs, DOMID), "domain 5 no longer introduced");
	int gone = 0;
	for (int i = 0; i < 100 && !gone; i++) {
		gone = stat(path, &st) < 0;
		if (!gone)
			usleep(20000);
	}
	ok(gone, "its xenstore socket is removed");
	e = 0;
	ok(hv->ops->evtchn_bind(hv, DOMID, (uint32_t)l.port, &e) == NULL && e == ESRCH,
	   "binding a dead domain's port: ESRCH");
	e = 0;
	ok(hv->ops->map(hv, DOMID, refs, 1, false, &e) == NULL && e == ESRCH,
	   "mapping a dead domain's grant: ESRCH");
	hv->ops->evtchn_unbind(ch); /* after the domain died: harmless */

	hv_close(hv);
	xs_close(xs);
	sim_stop(sim);
	char cmdline[128];
	snprintf(cmdline, sizeof(cmdline), "rm -rf '%s'", dir);
	(void)!system(cmdline);
	return done_testing();
}
