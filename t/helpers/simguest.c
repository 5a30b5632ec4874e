/*
 * simguest - a minimal simulated guest for shell tests: registers as
 * domain DOMID with the simulator at DIR, prints its xenstore socket path
 * and stays alive until killed (or, with --exit-after-stdin, until stdin
 * closes), so tests can watch a domain come and go.
 *
 *   simguest DIR DOMID NAME [--exit-after-stdin]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blkback/sim/guest.h"

int main(int argc, char **argv)
{
	char err[512];
	if (argc < 4) {
		fprintf(stderr, "usage: simguest DIR DOMID NAME [--exit-after-stdin]\n");
		return 2;
	}
	struct sim_guest *g = sim_guest_connect(argv[1], (uint16_t)atoi(argv[2]), argv[3], 16, 64,
						err, sizeof(err));
	if (!g) {
		fprintf(stderr, "simguest: %s\n", err);
		return 1;
	}
	printf("%s\n", sim_guest_xenstore_path(g));
	fflush(stdout);
	if (argc > 4 && strcmp(argv[4], "--exit-after-stdin") == 0) {
		char c;
		while (read(0, &c, 1) > 0)
			;
		sim_guest_disconnect(g);
		return 0;
	}
	for (;;)
		pause();
}
