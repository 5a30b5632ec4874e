/*
 * sim.c - the simulated hypervisor's event loop (see sim.h): one thread,
 * one epoll set holding the DIR/xenstored listener, one listener per live
 * guest domain (DIR/xenstored.d/<domid>), the DIR/hypervisor listener and
 * every client connection.
 *
 * Entries are only freed in sweep(), after a batch of events has been
 * handled, so an event never refers to a freed entry.
 */
#include "sim.h"
#include "hypervisor.h"
#include "xenstored.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"

#define SIM_MAX_GUEST_CONNS 32u

enum ent_kind { ENT_STOP, ENT_XS_LISTEN, ENT_XS_CONN, ENT_HV_LISTEN, ENT_HV_CONN };

struct ent {
	struct ent *next;
	enum ent_kind kind;
	int fd;
	bool dead;
	uint32_t mask;        /* current epoll events */
	uint16_t domid;       /* ENT_XS_LISTEN / ENT_XS_CONN */
	char *path;           /* listeners: socket path to unlink */
	struct xs_conn *xs;
	struct hvs_conn *hv;
};

struct sim {
	char *dir;
	int epfd;
	int stopfd;
	pthread_t thread;
	struct xs_server *xs;
	struct hvs *hv;
	struct ent *ents;
};

static struct ratelimit sim_rl = RATELIMIT_INIT(10, 5);

static struct ent *ent_add(struct sim *s, enum ent_kind kind, int fd, uint32_t mask)
{
	struct ent *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->kind = kind;
	e->fd = fd;
	e->mask = mask;
	struct epoll_event ev = { .events = mask, .data.ptr = e };
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(e);
		return NULL;
	}
	e->next = s->ents;
	s->ents = e;
	return e;
}

static void ent_free(struct sim *s, struct ent *e)
{
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, e->fd, NULL);
	if (e->kind == ENT_HV_CONN)
		hvs_conn_free(e->hv); /* closes the fd; releases its domain */
	else
		close(e->fd);
	if (e->xs)
		xs_conn_free(e->xs);
	if (e->path)
		unlink(e->path);
	free(e->path);
	free(e);
}

/* A listening socket at path.  It is bound under a temporary name and
 * renamed into place once it listens, so that whoever sees the path can
 * connect (no window where connect() is refused). */
static int listen_unix(const char *path, int type, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.new", path) >= (int)sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		return -1;
	}
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	unlink(sa.sun_path); /* a stale one from an earlier run */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0 ||
	    rename(sa.sun_path, path) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		unlink(sa.sun_path);
		close(fd);
		return -1;
	}
	return fd;
}

/* xenstored's domain hook: a live guest gets DIR/xenstored.d/<domid>. */
static void domain_hook(void *arg, uint16_t domid, bool up)
{
	struct sim *s = arg;
	char path[4096], err[256];
	snprintf(path, sizeof(path), "%s/xenstored.d/%u", s->dir, domid);
	for (struct ent *e = s->ents; e; e = e->next) {
		if (e->kind != ENT_XS_LISTEN || e->domid != domid)
			continue;
		e->dead = true;
		if (up) {
			/* A condemned listener of an earlier life must not unlink
			 * the socket we are about to create. */
			free(e->path);
			e->path = NULL;
		}
	}
	if (!up)
		return;
	int fd = listen_unix(path, SOCK_STREAM, err, sizeof(err));
	struct ent *e = fd >= 0 ? ent_add(s, ENT_XS_LISTEN, fd, EPOLLIN) : NULL;
	if (!e) {
		if (fd >= 0)
			close(fd);
		log_err("sim: no xenstore socket for domain %u: %s", domid, err);
		return;
	}
	e->domid = domid;
	e->path = strdup(path);
}

/* Live xenstore connections of a guest domain. */
static unsigned guest_conns(const struct sim *s, uint16_t domid)
{
	unsigned n = 0;
	for (const struct ent *e = s->ents; e; e = e->next)
		n += e->kind == ENT_XS_CONN && e->domid == domid && !e->dead;
	return n;
}

static void accept_conns(struct sim *s, struct ent *l)
{
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_limited(&sim_rl, VLOG_WARN, "sim: accept: %s", strerror(errno));
			return;
		}
		/* Each connection's memory is bounded; so is their number per guest. */
		if (l->kind == ENT_XS_LISTEN && l->domid != 0 &&
		    guest_conns(s, l->domid) >= SIM_MAX_GUEST_CONNS) {
			log_limited(&sim_rl, VLOG_WARN,
				    "sim: dom%u has %u xenstore connections; refusing more",
				    l->domid, SIM_MAX_GUEST_CONNS);
			close(fd);
			continue;
		}
		struct ent *e = ent_add(s, l->kind == ENT_HV_LISTEN ? ENT_HV_CONN : ENT_XS_CONN, fd,
					EPOLLIN);
		if (!e) {
			close(fd);
			continue;
		}
		if (l->kind == ENT_HV_LISTEN) {
			e->hv = hvs_conn_new(s->hv, fd);
			if (!e->hv)
				e->dead = true;
		} else {
			e->domid = l->domid;
			e->xs = xs_conn_new(s->xs, l->domid);
			if (!e->xs)
				e->dead = true;
		}
	}
}

static void xs_input(struct ent *e)
{
	uint8_t buf[16384];
	while (xs_conn_can_read(e->xs)) {
		ssize_t n = read(e->fd, buf, sizeof(buf));
		if (n > 0) {
			xs_process(e->xs, buf, (size_t)n);
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			e->dead = true;
		break;
	}
}

static void xs_flush(struct ent *e)
{
	const void *data;
	size_t len;
	while ((len = xs_conn_output(e->xs, &data)) > 0) {
		ssize_t n = send(e->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			xs_conn_consumed(e->xs, (size_t)n);
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			e->dead = true;
		break;
	}
}

/* After a batch: free dead entries, flush output, adjust interest; repeat
 * until nothing moves (freeing a guest's hypervisor connection fires
 * @releaseDomain to connections already passed, flushing lets held-back
 * requests run...). */
static void sweep(struct sim *s)
{
	bool again = true;
	while (again) {
		uint64_t before = xs_server_activity(s->xs);
		again = false;
		for (struct ent **p = &s->ents; *p;) {
			struct ent *e = *p;
			if (e->kind == ENT_XS_CONN && !e->dead) {
				xs_flush(e);
				if (xs_conn_dead(e->xs))
					e->dead = true;
			}
			if (e->dead) {
				*p = e->next;
				ent_free(s, e);
				again = true;
				continue;
			}
			p = &e->next;
		}
		if (xs_server_activity(s->xs) != before)
			again = true;
	}
	for (struct ent *e = s->ents; e; e = e->next) {
		if (e->kind != ENT_XS_CONN)
			continue;
		const void *d;
		uint32_t mask = (xs_conn_can_read(e->xs) ? EPOLLIN : 0) |
				(xs_conn_output(e->xs, &d) ? EPOLLOUT : 0);
		if (mask != e->mask) {
			struct epoll_event ev = { .events = mask, .data.ptr = e };
			epoll_ctl(s->epfd, EPOLL_CTL_MOD, e->fd, &ev);
			e->mask = mask;
		}
	}
}

static void *loop(void *arg)
{
	struct sim *s = arg;
	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(s->epfd, evs, 64, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("sim: epoll_wait: %s", strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			struct ent *e = evs[i].data.ptr;
			if (e->dead)
				continue;
			switch (e->kind) {
			case ENT_STOP:
				return NULL;
			case ENT_XS_LISTEN:
			case ENT_HV_LISTEN:
				accept_conns(s, e);
				break;
			case ENT_XS_CONN:
				/* On EPOLLHUP too: read what is left, then see EOF. */
				xs_input(e);
				break;
			case ENT_HV_CONN:
				if (!hvs_conn_input(e->hv))
					e->dead = true;
				break;
			}
		}
		sweep(s);
	}
}

void sim_stop(struct sim *s)
{
	if (!s)
		return;
	if (s->thread) {
		uint64_t one = 1;
		if (write(s->stopfd, &one, sizeof(one)) < 0)
			log_err("sim: cannot stop the loop: %s", strerror(errno));
		pthread_join(s->thread, NULL);
	}
	while (s->ents) {
		struct ent *e = s->ents;
		s->ents = e->next;
		ent_free(s, e);
	}
	hvs_free(s->hv);
	xs_server_free(s->xs);
	if (s->epfd >= 0)
		close(s->epfd);
	free(s->dir);
	free(s);
}

struct sim *sim_start(const char *dir, char *err, size_t errlen)
{
	char path[4096];
	struct sim *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->epfd = -1;
	s->dir = strdup(dir);
	snprintf(path, sizeof(path), "%s/xenstored.d", dir);
	if (!s->dir || (mkdir(dir, 0755) < 0 && errno != EEXIST) ||
	    (mkdir(path, 0755) < 0 && errno != EEXIST)) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		goto fail;
	}
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->epfd < 0 || s->stopfd < 0) {
		snprintf(err, errlen, "epoll/eventfd: %s", strerror(errno));
		if (s->stopfd >= 0)
			close(s->stopfd);
		goto fail;
	}
	if (!ent_add(s, ENT_STOP, s->stopfd, EPOLLIN)) {
		close(s->stopfd);
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		goto fail;
	}
	s->xs = xs_server_new(domain_hook, s);
	s->hv = s->xs ? hvs_new(s->xs) : NULL;
	if (!s->hv) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	const struct {
		const char *name;
		int type;
		enum ent_kind kind;
	} socks[] = { { "xenstored", SOCK_STREAM, ENT_XS_LISTEN },
		      { "hypervisor", SOCK_SEQPACKET, ENT_HV_LISTEN } };
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, socks[i].name);
		int fd = listen_unix(path, socks[i].type, err, errlen);
		struct ent *e = fd >= 0 ? ent_add(s, socks[i].kind, fd, EPOLLIN) : NULL;
		if (!e) {
			if (fd >= 0)
				close(fd);
			goto fail;
		}
		e->path = strdup(path);
	}
	int r = pthread_create(&s->thread, NULL, loop, s);
	if (r) {
		s->thread = 0;
		snprintf(err, errlen, "pthread_create: %s", strerror(r));
		goto fail;
	}
	return s;
fail:
	sim_stop(s);
	return NULL;
}
