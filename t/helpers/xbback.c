/*
 * xbback - the XenBus backend (blkback/xenbus.c) with a fake request
 * engine, for handshake tests that need no ring: every engine_start and
 * engine_stop is printed on stdout with the negotiated parameters.
 *
 *   xbback [--backend-type T] [--max-queues N] [--max-ring-order N]
 *          [--no-persistent]
 *   FAKE_ENGINE_FAIL=1  makes engine_start fail
 * Prints "ready" once watching; on SIGUSR1 prints "info N" and then the
 * info of every registered device, as JSON (one line each) and as text;
 * runs until SIGTERM/SIGINT, then stops cleanly (every device
 * Closing/Closed) and prints "stopped".
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blkback/vbd.h"
#include "blkback/xenbus.h"
#include "util/log.h"

struct engine {
	uint16_t domid;
	uint32_t devid;
};

static struct engine *fake_start(const struct engine_params *p, char *err, size_t errlen)
{
	struct engine *e;

	if (getenv("FAKE_ENGINE_FAIL")) {
		snprintf(err, errlen, "injected engine failure");
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	e->domid = p->domid;
	e->devid = p->devid;
	printf("start %u/%u abi=%s order=%u queues=%u", (unsigned)p->domid, p->devid,
	       blkif_abi_name(p->abi), p->ring_order, p->nr_queues);
	for (unsigned q = 0; q < p->nr_queues; q++) {
		printf(" q%u=", q);
		for (unsigned i = 0; i < 1u << p->ring_order; i++)
			printf("%s%u", i ? "," : "", p->queue[q].ring_ref[i]);
		printf(":%u", p->queue[q].evtchn);
	}
	printf(" persistent=%d ro=%d flush=%d barrier=%d discard=%d gran=%u indirect=%u\n",
	       p->persistent, p->readonly, p->feature_flush, p->feature_barrier,
	       p->feature_discard, p->discard_granularity, p->max_indirect_segs);
	fflush(stdout);
	return e;
}

static void fake_stop(struct engine *e)
{
	printf("stop %u/%u\n", (unsigned)e->domid, e->devid);
	fflush(stdout);
	free(e);
}

static void fake_set_sectors(struct engine *e, uint64_t sectors)
{
	printf("sectors %u/%u %llu\n", (unsigned)e->domid, e->devid, (unsigned long long)sectors);
	fflush(stdout);
}

static size_t fake_info(struct engine *e, char *buf, size_t len, bool json)
{
	int n = snprintf(buf, len, json ? "{\"fake\": true}\n" : "engine: fake\n");
	return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

static const struct xenbus_engine_ops fake_ops = {
	fake_start, fake_stop, fake_set_sectors, fake_info,
};

static void dump_info(void)
{
	struct vbd *v[64];
	char buf[8192];
	size_t n = vbd_list(v, 64);

	printf("info %zu\n", n);
	for (size_t i = 0; i < n; i++) {
		vbd_format_info(v[i], buf, sizeof(buf), true);
		printf("%s", buf);
		vbd_format_info(v[i], buf, sizeof(buf), false);
		printf("%s", buf);
		vbd_put(v[i]);
	}
	printf("end info\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct xenbus_config cfg;
	struct xenbus *xb;
	char err[256];
	sigset_t set;
	int sig;

	log_init("xbback", getenv("XBBACK_DEBUG") ? VLOG_DEBUG : VLOG_INFO, false);
	xenbus_config_defaults(&cfg);
	cfg.engine = &fake_ops;
	cfg.socket_only = true;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--backend-type") == 0 && i + 1 < argc)
			cfg.backend_type = argv[++i];
		else if (strcmp(argv[i], "--max-queues") == 0 && i + 1 < argc)
			cfg.max_queues = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--max-ring-order") == 0 && i + 1 < argc)
			cfg.max_ring_order = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--no-persistent") == 0)
			cfg.no_persistent = true;
		else {
			fprintf(stderr, "xbback: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	xb = xenbus_start(&cfg, err, sizeof(err));
	if (!xb) {
		fprintf(stderr, "xbback: %s\n", err);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	while (sigwait(&set, &sig) == 0 && sig == SIGUSR1)
		dump_info();
	xenbus_stop(xb);
	printf("stopped\n");
	return 0;
}
