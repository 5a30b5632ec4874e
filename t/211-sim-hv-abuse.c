/*
 * DIR/hypervisor against misbehaving clients: malformed messages, fds that
 * are not sealed memfds, guest requests from the backend and backend
 * requests from a guest, port exhaustion; the simulator must refuse each
 * and keep serving everybody else.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "blkback/hv.h"
#include "blkback/sim/guest.h"
#include "blkback/sim/hvproto.h"
#include "blkback/sim/sim.h"
#include "util/log.h"
#include "util/tap.h"
#include "simtest.h"

static char dir[64];

static int hv_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/hypervisor", dir);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		bail_out("connect");
	return fd;
}

static int memfd(size_t len, bool seal)
{
	int fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)len) < 0)
		bail_out("memfd");
	if (seal)
		fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
	return fd;
}

static int reg(int sock, uint32_t domid, uint64_t pages, uint32_t grants, int fd0, int fd1)
{
	struct simhv_msg m = { .op = SIMHV_REGISTER, .domid = domid, .pages = pages,
			       .nr_grants = grants };
	int fds[2] = { fd0, fd1 };
	return simhv_call(sock, &m, fds, 2, NULL, NULL);
}

int main(void)
{
	char err[256];
	struct sim *sim = simtest_start(dir, sizeof(dir), "211", 19);
	struct sim_guest *good = sim_guest_connect(dir, 2, "good", 4, 8, err, sizeof(err));
	if (!good)
		bail_out(err);
	int port = sim_guest_evtchn_alloc(good, 0);

	/* Registration checks. */
	int s = hv_connect();
	int m4 = memfd(4 * 4096, true), g8 = memfd(64, true);
	int unsealed = memfd(4 * 4096, false), nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	is_int(reg(s, 9, 4, 8, unsealed, g8), -EINVAL, "unsealed memory memfd refused");
	is_int(reg(s, 9, 4, 8, nul, g8), -EINVAL, "/dev/null as memory refused");
	is_int(reg(s, 9, 5, 8, m4, g8), -EINVAL, "memory smaller than claimed refused");
	is_int(reg(s, 9, 4, 9, m4, g8), -EINVAL, "grant table smaller than claimed refused");
	is_int(reg(s, 0, 4, 8, m4, g8), -EINVAL, "domain 0 cannot be registered");
	is_int(reg(s, 40000, 4, 8, m4, g8), -EINVAL, "a domid beyond the range refused");
	is_int(reg(s, 2, 4, 8, m4, g8), -EEXIST, "a live domid refused");
	struct simhv_msg m = { .op = SIMHV_REGISTER, .domid = 9, .pages = 4, .nr_grants = 8 };
	is_int(simhv_call(s, &m, NULL, 0, NULL, NULL), -EINVAL, "registration without fds refused");

	/* A connection that is not a guest may not act as one, and vice versa. */
	m = (struct simhv_msg){ .op = SIMHV_EVTCHN_ALLOC, .remote = 0 };
	is_int(simhv_call(s, &m, NULL, 0, NULL, NULL), -EPERM, "backend cannot allocate guest ports");
	is_int(reg(s, 9, 4, 8, m4, g8), 0, "a proper registration works");
	m = (struct simhv_msg){ .op = SIMHV_DOMAIN_GET, .domid = 2 };
	is_int(simhv_call(s, &m, NULL, 0, NULL, NULL), -EPERM, "a guest cannot fetch another domain's memory");
	m = (struct simhv_msg){ .op = SIMHV_EVTCHN_BIND, .domid = 2, .port = (uint32_t)port };
	is_int(simhv_call(s, &m, NULL, 0, NULL, NULL), -EPERM, "a guest cannot bind another's port");
	m = (struct simhv_msg){ .op = 77 };
	is_int(simhv_call(s, &m, NULL, 0, NULL, NULL), -EINVAL, "unknown op: EINVAL");
	int n = 0;
	for (;;) {
		m = (struct simhv_msg){ .op = SIMHV_EVTCHN_ALLOC, .remote = 0 };
		int fds[2];
		unsigned nf = 2;
		int r = simhv_call(s, &m, NULL, 0, fds, &nf);
		if (r < 0) {
			is_int(r, -ENOSPC, "port exhaustion: ENOSPC");
			break;
		}
		close(fds[0]);
		close(fds[1]);
		n++;
	}
	is_int(n, SIMHV_MAX_PORTS, "up to the per-domain port limit");
	close(s);

	/* Short and long garbage datagrams: the sender is dropped. */
	s = hv_connect();
	(void)!send(s, "junk", 4, 0);
	char b;
	ok(recv(s, &b, 1, 0) == 0, "a short datagram closes the connection");
	close(s);
	s = hv_connect();
	char big[4096];
	memset(big, 0xa5, sizeof(big));
	(void)!send(s, big, sizeof(big), 0);
	ok(recv(s, &b, 1, 0) == 0, "a long datagram closes the connection");
	close(s);

	/* Everybody else is fine. */
	char path[128];
	struct hv *hv = hv_open_sim(dir, err, sizeof(err));
	int e = 0;
	struct hv_evtchn *ch = hv ? hv->ops->evtchn_bind(hv, 2, (uint32_t)port, &e) : NULL;
	ok(ch != NULL, "the good guest's port still binds");
	snprintf(path, sizeof(path), "%s/xenstored.d/9", dir);
	for (int i = 0; i < 200 && access(path, F_OK) == 0; i++)
		usleep(10000);
	ok(access(path, F_OK) != 0, "the abusive domain 9 died with its connection");
	if (ch)
		hv->ops->evtchn_unbind(ch);
	if (hv)
		hv_close(hv);
	sim_guest_disconnect(good);
	close(m4);
	close(g8);
	close(unsealed);
	close(nul);
	return simtest_end(sim, dir);
}
