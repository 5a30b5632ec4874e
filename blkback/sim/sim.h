/*
 * sim.h - the simulated hypervisor hosted by `vbdfs --sim DIR`.
 *
 * It provides, on Unix sockets in DIR:
 *   DIR/xenstored   the xenstore wire protocol (xen/io/xs_wire.h), so the
 *                   real libxenstore client and Debian's xenstore-* tools
 *                   work against it with XENSTORED_PATH=DIR/xenstored
 *   DIR/hypervisor  where domains register their memory (a memfd), their
 *                   grant table (Xen v1 grant entries in shared memory) and
 *                   their event channels (eventfd pairs), passed with
 *                   SCM_RIGHTS.  The backend (hv_sim.c) asks it for a
 *                   domain's memory and ports.
 *
 * A domain is alive while its hypervisor connection is open; when it closes
 * the simulator removes /local/domain/<domid> and fires @releaseDomain, as
 * Xen and xenstored do for a destroyed guest.
 */
#ifndef VBDFS_SIM_H
#define VBDFS_SIM_H

#include <stddef.h>

struct sim;

/* Create DIR if needed, bind both sockets and serve them on threads of
 * this process.  Writes /local/domain/0 (name "Domain-0"). */
struct sim *sim_start(const char *dir, char *err, size_t errlen);
void sim_stop(struct sim *sim);

#endif
