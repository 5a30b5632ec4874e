/*
 * xenstored.h - the simulator's xenstore protocol engine (xen/io/xs_wire.h).
 *
 * Transport free: the event loop (sim.c) reads bytes from a socket and
 * feeds them to xs_process(), and writes what xs_conn_output() returns.
 * Everything runs on one thread; nothing here blocks.  A fuzz target can
 * drive a connection with arbitrary bytes through xs_process() alone.
 *
 * Every connection belongs to a domain: 0 (privileged, the DIR/xenstored
 * socket) or a guest domid (DIR/xenstored.d/<domid>).  Permissions,
 * quotas and relative paths follow that domid.
 */
#ifndef VBDFS_SIM_XENSTORED_H
#define VBDFS_SIM_XENSTORED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xs_server;
struct xs_conn;

/* Limits per connection (XSA-349: bounded memory per client). */
#define XS_MAX_WATCHES      128u    /* of one guest domain, all connections */
#define XS_MAX_TXNS         10u     /* open transactions of one guest domain */
#define XS_MAX_GUEST_TXNS   128u    /* of all guests together */
#define XS_MAX_EVENTS       1024u   /* queued, coalesced watch events */
#define XS_MAX_EVENT_BYTES  (256u * 1024) /* their paths and tokens */
#define XS_OUT_LIMIT        (256u * 1024) /* stop reading requests above this backlog */
#define XS_IN_LIMIT         (64u * 1024)

/* Called when a domain comes (up) or goes; the loop opens or closes the
 * domain's socket. */
typedef void xs_domain_hook(void *arg, uint16_t domid, bool up);

/* A new store holding /local/domain/0 (name "Domain-0"). */
struct xs_server *xs_server_new(xs_domain_hook *hook, void *hook_arg);
void xs_server_free(struct xs_server *s); /* frees every connection too */

struct xs_conn *xs_conn_new(struct xs_server *s, uint16_t domid);
void xs_conn_free(struct xs_conn *c);
uint16_t xs_conn_domid(const struct xs_conn *c);

/* Feed bytes from the client and handle every complete request (as far as
 * the output backlog allows; xs_pump continues).  Never fails: a protocol
 * violation marks the connection dead (xs_conn_dead), to be closed. */
void xs_process(struct xs_conn *c, const void *bytes, size_t len);
void xs_pump(struct xs_conn *c);
bool xs_conn_dead(const struct xs_conn *c);
/* True if the loop should read more input now. */
bool xs_conn_can_read(const struct xs_conn *c);
/* Pending output (replies and watch events); consume what was written. */
size_t xs_conn_output(struct xs_conn *c, const void **data);
void xs_conn_consumed(struct xs_conn *c, size_t n);

/* Domain lifecycle (from the hypervisor part).  introduce writes
 * /local/domain/N/{name,domid} (readable by N, owned by dom0) and fires
 * @introduceDomain; release marks N's connections dead, removes
 * /local/domain/N and fires @releaseDomain. */
int xs_domain_introduce(struct xs_server *s, uint16_t domid, const char *name);
void xs_domain_release(struct xs_server *s, uint16_t domid);
bool xs_domain_is_introduced(const struct xs_server *s, uint16_t domid);

/* A counter that moves whenever a request was handled, an event queued or
 * a connection condemned: the loop repeats its flush pass until it stands
 * still, so nothing queued for an earlier connection waits for the next
 * wakeup. */
uint64_t xs_server_activity(const struct xs_server *s);

/* Direct privileged write, for the simulator's own nodes. */
int xs_server_write(struct xs_server *s, const char *path, const char *value);

#endif
