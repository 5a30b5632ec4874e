/*
 * xbserve - the backend stack without FUSE, for the xenlab: xenbus.c +
 * the request engine on the real-Xen transport (hv_xen.c), serving
 * /local/domain/0/backend/TYPE until SIGTERM/SIGINT.  It lets make
 * xen-check prove the data path on real Xen independently of the vbdfs
 * daemon (fusefs/vbdfs.c), which adds the /vbd tree on top of the same
 * calls.
 *
 * usage: xbserve [--backend-type vbd|vbdfs] [--no-persistent]
 *                [--max-queues N] [--max-ring-order N] [--max-indirect N] [-v]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blkback/hv.h"
#include "blkback/xenbus.h"
#include "util/log.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = 1;
}

int main(int argc, char **argv)
{
	struct xenbus_config cfg;
	struct sigaction sa;
	struct xenbus *xb;
	struct hv *hv;
	char err[256];
	bool verbose = false;

	xenbus_config_defaults(&cfg);
	cfg.backend_type = "vbd";
	cfg.engine = &xenbus_engine_default;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--backend-type") && i + 1 < argc)
			cfg.backend_type = argv[++i];
		else if (!strcmp(argv[i], "--no-persistent"))
			cfg.no_persistent = true;
		else if (!strcmp(argv[i], "--max-queues") && i + 1 < argc)
			cfg.max_queues = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--max-ring-order") && i + 1 < argc)
			cfg.max_ring_order = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--max-indirect") && i + 1 < argc)
			cfg.max_indirect_segs = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "-v"))
			verbose = true;
		else {
			fprintf(stderr, "usage: xbserve [--backend-type vbd|vbdfs] [--no-persistent] "
					"[--max-queues N] [--max-ring-order N] [--max-indirect N] [-v]\n");
			return 2;
		}
	}
	log_init("xbserve", verbose ? VLOG_DEBUG : VLOG_INFO, false);
	hv = hv_open_xen(err, sizeof(err));
	if (!hv) {
		fprintf(stderr, "xbserve: %s\n", err);
		return 1;
	}
	cfg.hv = hv;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	xb = xenbus_start(&cfg, err, sizeof(err));
	if (!xb) {
		fprintf(stderr, "xbserve: %s\n", err);
		hv_close(hv);
		return 1;
	}
	while (!stop)
		pause();
	log_info("stopping: %u device(s)", xenbus_nr_devices(xb));
	xenbus_stop(xb);
	hv_close(hv);
	return 0;
}
