/*
 * simback - the whole backend (XenBus state machine + the real request
 * engine on the hv_sim transport) without the FUSE tree, for vbd-front's
 * end-to-end tests: like `vbdfs --sim DIR` with the simulator running in
 * another process (t/helpers/simd).
 *
 *   simback DIR [--max-queues N] [--max-ring-order N] [--max-indirect N]
 *               [--no-persistent]
 * Prints "ready" once watching; runs until SIGTERM/SIGINT, then stops
 * every device cleanly and prints "stopped".
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
	struct hv *hv;
	char err[256], path[4096];
	sigset_t set;
	int sig;

	if (argc < 2) {
		fprintf(stderr, "usage: simback DIR [options]\n");
		return 2;
	}
	log_init("simback", getenv("SIMBACK_DEBUG") ? VLOG_DEBUG : VLOG_INFO, false);
	xenbus_config_defaults(&cfg);
	cfg.engine = &xenbus_engine_default;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--max-queues") == 0 && i + 1 < argc)
			cfg.max_queues = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--max-ring-order") == 0 && i + 1 < argc)
			cfg.max_ring_order = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--max-indirect") == 0 && i + 1 < argc)
			cfg.max_indirect_segs = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--no-persistent") == 0)
			cfg.no_persistent = true;
		else {
			fprintf(stderr, "simback: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	hv = hv_open_sim(argv[1], err, sizeof(err));
	if (!hv) {
		fprintf(stderr, "simback: %s\n", err);
		return 1;
	}
	cfg.hv = hv;
	snprintf(path, sizeof(path), "%s/xenstored", argv[1]);
	setenv("XENSTORED_PATH", path, 1);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	xb = xenbus_start(&cfg, err, sizeof(err));
	if (!xb) {
		fprintf(stderr, "simback: %s\n", err);
		hv_close(hv);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	sigwait(&set, &sig);
	xenbus_stop(xb);
	hv_close(hv);
	printf("stopped\n");
	return 0;
}
