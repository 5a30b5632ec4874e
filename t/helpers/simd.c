/*
 * simd - run the simulated hypervisor at DIR until SIGTERM/SIGINT, for
 * tests that need real processes on real sockets.
 *
 *   simd DIR        prints "ready" on stdout once both sockets listen
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "blkback/sim/sim.h"
#include "util/log.h"

int main(int argc, char **argv)
{
	char err[512];
	sigset_t set;
	int sig;

	if (argc != 2) {
		fprintf(stderr, "usage: simd DIR\n");
		return 2;
	}
	log_init("simd", getenv("SIMD_DEBUG") ? VLOG_DEBUG : VLOG_WARN, false);
	/* Block the signals before any thread starts, then wait for one. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct sim *sim = sim_start(argv[1], err, sizeof(err));
	if (!sim) {
		fprintf(stderr, "simd: %s\n", err);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	sigwait(&set, &sig);
	sim_stop(sim);
	return 0;
}
