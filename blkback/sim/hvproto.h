/*
 * hvproto.h - the wire format of DIR/hypervisor, shared by the server
 * (hypervisor.c), the guest library (guest.c) and the backend (hv_sim.c).
 *
 * A SOCK_SEQPACKET Unix socket; every request and reply is one struct
 * simhv_msg, file descriptors ride along with SCM_RIGHTS.  A connection
 * that registered a domain speaks for that domain (guest requests only);
 * any other connection is the backend domain 0.
 *
 *   REGISTER      guest: domid, name, pages, nr_grants; fds [memory, grant table]
 *                 (memfds sealed with F_SEAL_SHRINK, at least pages*4096 and
 *                 nr_grants*8 bytes)
 *   EVTCHN_ALLOC  guest: remote -> port; reply fds [guest->backend, backend->guest]
 *   EVTCHN_CLOSE  guest: port
 *   DOMAIN_GET    backend: domid -> pages, nr_grants, incarnation;
 *                 reply fds [memory, grant table, liveness (hangs up when the domain dies)]
 *   EVTCHN_BIND   backend: domid, port -> reply fds [guest->backend, backend->guest]
 *   EVTCHN_UNBIND backend: domid, port (the port becomes unbound again)
 */
#ifndef VBDFS_SIM_HVPROTO_H
#define VBDFS_SIM_HVPROTO_H

#include <stdint.h>

enum simhv_op {
	SIMHV_REGISTER = 1,
	SIMHV_EVTCHN_ALLOC,
	SIMHV_EVTCHN_CLOSE,
	SIMHV_DOMAIN_GET,
	SIMHV_EVTCHN_BIND,
	SIMHV_EVTCHN_UNBIND,
};

#define SIMHV_PAGE_SIZE 4096u
#define SIMHV_MAX_FDS 3
#define SIMHV_MAX_PORTS 1024u        /* per domain */
#define SIMHV_MAX_PAGES (1u << 20)   /* 4 GiB of guest memory */
#define SIMHV_MAX_GRANTS (1u << 20)

struct simhv_msg {
	uint32_t op;
	int32_t status;      /* reply: 0 or -errno */
	uint32_t domid;
	uint32_t port;
	uint32_t remote;
	uint32_t nr_grants;
	uint64_t pages;
	uint64_t incarnation;
	char name[64];
};

/* Send msg with nfds descriptors; 0 or -errno. */
int simhv_send(int sock, const struct simhv_msg *msg, const int *fds, unsigned nfds);
/* Receive one message; *nfds in: room, out: received (extra ones are
 * closed).  Returns 1, 0 on EOF, -errno on error or a malformed message. */
int simhv_recv(int sock, struct simhv_msg *msg, int *fds, unsigned *nfds, int flags);
/* Send a request and wait for its reply (same op). */
int simhv_call(int sock, struct simhv_msg *msg, const int *fds, unsigned nfds, int *rfds,
	       unsigned *nrfds);

#endif
