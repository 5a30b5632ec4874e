/*
 * hypervisor.h - the DIR/hypervisor server of the simulator (protocol in
 * hvproto.h).  Driven by the event loop in sim.c, one thread.
 */
#ifndef VBDFS_SIM_HYPERVISOR_H
#define VBDFS_SIM_HYPERVISOR_H

#include <stdbool.h>

struct xs_server;
struct hvs;
struct hvs_conn;

struct hvs *hvs_new(struct xs_server *xs);
void hvs_free(struct hvs *h);

/* Take over a connected socket. */
struct hvs_conn *hvs_conn_new(struct hvs *h, int fd);
/* Handle the pending request(s); false when the connection must close. */
bool hvs_conn_input(struct hvs_conn *c);
/* Close it; a registered domain dies with its connection. */
void hvs_conn_free(struct hvs_conn *c);

#endif
