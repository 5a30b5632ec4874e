/*
 * engback - the XenBus backend (blkback/xenbus.c) with the real request
 * engine on the simulated hypervisor: what vbdfs serves, without FUSE.
 * For the engine's end-to-end tests with vbd-front (t/254).
 *
 *   engback --sim DIR [--max-queues N] [--max-ring-order N]
 *           [--max-indirect N] [--no-persistent]
 * Prints "ready" once watching; runs until SIGTERM/SIGINT, then stops every
 * device cleanly and prints "stopped".
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blkback/hv.h"
#include "blkback/xenbus.h"
#include "util/log.h"

int main(int argc, char **argv)
{
	struct xenbus_config cfg;
	struct xenbus *xb;
	const char *dir = NULL;
	char err[256];
	sigset_t set;
	int sig;

	log_init("engback", getenv("ENGBACK_DEBUG") ? VLOG_DEBUG : VLOG_INFO, false);
	xenbus_config_defaults(&cfg);
	cfg.engine = &xenbus_engine_default;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--sim") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (strcmp(argv[i], "--max-queues") == 0 && i + 1 < argc)
			cfg.max_queues = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--max-ring-order") == 0 && i + 1 < argc)
			cfg.max_ring_order = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--max-indirect") == 0 && i + 1 < argc)
			cfg.max_indirect_segs = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--no-persistent") == 0)
			cfg.no_persistent = true;
		else {
			fprintf(stderr, "engback: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	if (!dir) {
		fprintf(stderr, "engback: --sim DIR is required\n");
		return 2;
	}
	cfg.hv = hv_open_sim(dir, err, sizeof(err));
	if (!cfg.hv) {
		fprintf(stderr, "engback: %s\n", err);
		return 1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	xb = xenbus_start(&cfg, err, sizeof(err));
	if (!xb) {
		fprintf(stderr, "engback: %s\n", err);
		hv_close(cfg.hv);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	sigwait(&set, &sig);
	xenbus_stop(xb);
	hv_close(cfg.hv);
	printf("stopped\n");
	return 0;
}
