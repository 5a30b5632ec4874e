/*
 * t/simtest.h - the start and the end of a C test that runs the simulated
 * hypervisor in its own process (t/2xx).
 *
 *   char dir[64];
 *   struct sim *sim = simtest_start(dir, sizeof(dir), "213", 27);
 *   ... sim_guest_connect(dir, ...), hv_open_sim(dir, ...) ...
 *   return simtest_end(sim, dir);
 */
#ifndef VBDFS_T_SIMTEST_H
#define VBDFS_T_SIMTEST_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "blkback/sim/sim.h"
#include "util/log.h"
#include "util/tap.h"

/* A fresh /tmp/vbdfs-NAME.XXXXXX (short: socket paths live there) in dir,
 * SIGPIPE ignored (a peer may hang up), only errors logged, the plan, and
 * the simulator started in dir.  Bails out on failure. */
static inline struct sim *simtest_start(char *dir, size_t dirlen, const char *name, int tests)
{
	char err[256];
	struct sim *sim;

	snprintf(dir, dirlen, "/tmp/vbdfs-%s.XXXXXX", name);
	if (!mkdtemp(dir))
		bail_out("mkdtemp");
	signal(SIGPIPE, SIG_IGN);
	log_init(name, VLOG_ERR, false);
	plan(tests);
	sim = sim_start(dir, err, sizeof(err));
	if (!sim)
		bail_out(err);
	return sim;
}

/* Stop the simulator, remove dir, and finish the TAP output. */
static inline int simtest_end(struct sim *sim, const char *dir)
{
	char cmd[128];

	sim_stop(sim);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
	return done_testing();
}

#endif
