/*
 * hypervisor.c - the simulated hypervisor's domain registry, grant tables
 * and event channels (see hvproto.h for the protocol).
 *
 * Guest memory and grant tables stay in the guest's memfds; this server
 * only checks and hands the descriptors to the backend.  The memfds must
 * be sealed against shrinking so that no mapping of them can ever fault
 * (SIGBUS) in the backend, whatever the guest does later.
 */
#include "hypervisor.h"
#include "hvproto.h"
#include "xenstored.h"
#include "xs_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

enum { PORT_FREE, PORT_UNBOUND, PORT_BOUND };

struct hvs_port {
	uint8_t state;
	uint16_t remote;
	int g2b, b2g;   /* eventfds: guest -> backend, backend -> guest */
};

struct hvs_dom {
	struct hvs_dom *next;
	uint16_t domid;
	int memfd, gntfd;
	int alive_r, alive_w; /* a pipe: the read end hangs up when the domain dies */
	uint64_t pages;
	uint32_t nr_grants;
	uint64_t incarnation;
	struct hvs_port ports[SIMHV_MAX_PORTS + 1]; /* port 0 is never used */
};

struct hvs {
	struct xs_server *xs;
	struct hvs_dom *doms;
	uint64_t next_incarnation;
};

struct hvs_conn {
	struct hvs *h;
	int fd;
	struct hvs_dom *dom; /* the domain this connection registered, or NULL */
};

static struct ratelimit hv_rl = RATELIMIT_INIT(10, 5);

struct hvs *hvs_new(struct xs_server *xs)
{
	struct hvs *h = calloc(1, sizeof(*h));
	if (h)
		h->xs = xs;
	return h;
}

static struct hvs_dom *find_dom(struct hvs *h, uint32_t domid)
{
	for (struct hvs_dom *d = h->doms; d; d = d->next)
		if (d->domid == domid)
			return d;
	return NULL;
}

static void close_port(struct hvs_port *p)
{
	if (p->state != PORT_FREE) {
		close(p->g2b);
		close(p->b2g);
	}
	p->state = PORT_FREE;
}

static void dom_free(struct hvs *h, struct hvs_dom *d)
{
	for (struct hvs_dom **p = &h->doms; *p; p = &(*p)->next) {
		if (*p == d) {
			*p = d->next;
			break;
		}
	}
	for (unsigned i = 1; i <= SIMHV_MAX_PORTS; i++)
		close_port(&d->ports[i]);
	close(d->memfd);
	close(d->gntfd);
	close(d->alive_r);
	close(d->alive_w);
	free(d);
}

void hvs_free(struct hvs *h)
{
	if (!h)
		return;
	while (h->doms)
		dom_free(h, h->doms);
	free(h);
}

struct hvs_conn *hvs_conn_new(struct hvs *h, int fd)
{
	struct hvs_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->h = h;
	c->fd = fd;
	return c;
}

void hvs_conn_free(struct hvs_conn *c)
{
	if (!c)
		return;
	if (c->dom) {
		uint16_t domid = c->dom->domid;
		dom_free(c->h, c->dom);
		log_info("sim: domain %u is gone", domid);
		xs_domain_release(c->h->xs, domid);
	}
	close(c->fd);
	free(c);
}

/* A memfd sealed against shrinking, at least min bytes long. */
static int check_memfd(int fd, uint64_t min)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return -EINVAL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < min)
		return -EINVAL;
	return 0;
}

static int do_register(struct hvs_conn *c, struct simhv_msg *m, int *fds, unsigned nfds)
{
	struct hvs *h = c->h;
	if (c->dom)
		return -EBUSY;
	if (nfds != 2 || m->domid == 0 || m->domid > XS_DOMID_MAX || m->pages == 0 ||
	    m->pages > SIMHV_MAX_PAGES || m->nr_grants == 0 || m->nr_grants > SIMHV_MAX_GRANTS)
		return -EINVAL;
	if (find_dom(h, m->domid))
		return -EEXIST;
	if (check_memfd(fds[0], m->pages * 4096) < 0 || check_memfd(fds[1], m->nr_grants * 8ull) < 0)
		return -EINVAL;
	struct hvs_dom *d = calloc(1, sizeof(*d));
	int pipefd[2];
	if (!d)
		return -ENOMEM;
	if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0) {
		free(d);
		return -errno;
	}
	d->domid = (uint16_t)m->domid;
	d->memfd = fds[0];
	d->gntfd = fds[1];
	d->alive_r = pipefd[0];
	d->alive_w = pipefd[1];
	d->pages = m->pages;
	d->nr_grants = m->nr_grants;
	d->incarnation = ++h->next_incarnation;
	/* The name is guest-chosen: keep it printable. */
	for (char *p = m->name; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			*p = '?';
	int err = xs_domain_introduce(h->xs, d->domid, m->name[0] ? m->name : "guest");
	if (err < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		free(d);
		return err;
	}
	d->next = h->doms;
	h->doms = d;
	c->dom = d;
	fds[0] = fds[1] = -1; /* kept */
	log_info("sim: domain %u (%s) registered: %llu pages, %u grants", d->domid, m->name,
		 (unsigned long long)d->pages, d->nr_grants);
	return 0;
}

static struct hvs_port *port_of(struct hvs_dom *d, uint32_t port)
{
	if (!d || port == 0 || port > SIMHV_MAX_PORTS)
		return NULL;
	return &d->ports[port];
}

static int do_alloc(struct hvs_conn *c, struct simhv_msg *m, int *rfds, unsigned *nrfds)
{
	if (!c->dom)
		return -EPERM;
	if (m->remote > XS_DOMID_MAX)
		return -EINVAL;
	for (uint32_t i = 1; i <= SIMHV_MAX_PORTS; i++) {
		struct hvs_port *p = &c->dom->ports[i];
		if (p->state != PORT_FREE)
			continue;
		p->g2b = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		p->b2g = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (p->g2b < 0 || p->b2g < 0) {
			int err = -errno;
			if (p->g2b >= 0)
				close(p->g2b);
			if (p->b2g >= 0)
				close(p->b2g);
			return err;
		}
		p->state = PORT_UNBOUND;
		p->remote = (uint16_t)m->remote;
		m->port = i;
		rfds[0] = p->g2b;
		rfds[1] = p->b2g;
		*nrfds = 2;
		return 0;
	}
	return -ENOSPC;
}

static int do_close(struct hvs_conn *c, struct simhv_msg *m)
{
	struct hvs_port *p = port_of(c->dom, m->port);
	if (!c->dom)
		return -EPERM;
	if (!p || p->state == PORT_FREE)
		return -EINVAL;
	close_port(p);
	return 0;
}

static int do_domain_get(struct hvs_conn *c, struct simhv_msg *m, int *rfds, unsigned *nrfds)
{
	if (c->dom)
		return -EPERM;
	struct hvs_dom *d = find_dom(c->h, m->domid);
	if (!d)
		return -ESRCH;
	m->pages = d->pages;
	m->nr_grants = d->nr_grants;
	m->incarnation = d->incarnation;
	rfds[0] = d->memfd;
	rfds[1] = d->gntfd;
	rfds[2] = d->alive_r;
	*nrfds = 3;
	return 0;
}

static int do_bind(struct hvs_conn *c, struct simhv_msg *m, int *rfds, unsigned *nrfds)
{
	if (c->dom)
		return -EPERM;
	struct hvs_dom *d = find_dom(c->h, m->domid);
	if (!d)
		return -ESRCH;
	struct hvs_port *p = port_of(d, m->port);
	/* Xen: the port must be unbound and reserved for the binding domain. */
	if (!p || p->state != PORT_UNBOUND || p->remote != 0)
		return -EINVAL;
	p->state = PORT_BOUND;
	m->incarnation = d->incarnation;
	rfds[0] = p->g2b;
	rfds[1] = p->b2g;
	*nrfds = 2;
	return 0;
}

static int do_unbind(struct hvs_conn *c, struct simhv_msg *m)
{
	if (c->dom)
		return -EPERM;
	struct hvs_dom *d = find_dom(c->h, m->domid);
	if (!d)
		return -ESRCH;
	struct hvs_port *p = port_of(d, m->port);
	if (!p || p->state != PORT_BOUND)
		return -EINVAL;
	p->state = PORT_UNBOUND;
	return 0;
}

bool hvs_conn_input(struct hvs_conn *c)
{
	struct simhv_msg m;
	int fds[SIMHV_MAX_FDS], rfds[SIMHV_MAX_FDS];
	unsigned nfds = SIMHV_MAX_FDS, nrfds = 0;
	int r = simhv_recv(c->fd, &m, fds, &nfds, MSG_DONTWAIT);
	if (r == -EAGAIN)
		return true;
	if (r <= 0) {
		if (r < 0)
			log_limited(&hv_rl, VLOG_WARN, "sim: bad message on the hypervisor socket: %s",
				    strerror(-r));
		return false;
	}
	switch (m.op) {
	case SIMHV_REGISTER: r = do_register(c, &m, fds, nfds); break;
	case SIMHV_EVTCHN_ALLOC: r = do_alloc(c, &m, rfds, &nrfds); break;
	case SIMHV_EVTCHN_CLOSE: r = do_close(c, &m); break;
	case SIMHV_DOMAIN_GET: r = do_domain_get(c, &m, rfds, &nrfds); break;
	case SIMHV_EVTCHN_BIND: r = do_bind(c, &m, rfds, &nrfds); break;
	case SIMHV_EVTCHN_UNBIND: r = do_unbind(c, &m); break;
	default: r = -EINVAL; break;
	}
	for (unsigned i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	m.status = r;
	/* A client that does not read its replies is dropped, never waited for. */
	if (r < 0)
		nrfds = 0;
	r = simhv_send(c->fd, &m, rfds, nrfds);
	return r == 0;
}
