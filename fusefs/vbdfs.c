/*
 * vbdfs - the daemon: serves Xen guest disks (blkback over libxenstore and
 * the hypervisor transport) and exports them as the /vbd FUSE tree.
 *
 *   vbdfs [--sim DIR] [-f] [--backend-type vbdfs|vbd] [-v] [--pidfile FILE]
 *         [--no-mount] [MOUNTPOINT]
 *
 * Start-up order: simulator (with --sim), hypervisor transport, xenstore
 * watcher, FUSE mount.  Without -f the process forks first and the parent
 * waits until the child reports that all of that worked, so every start-up
 * error is printed on the terminal and reflected in the exit status.
 * SIGTERM/SIGINT/SIGHUP shut down in reverse order: every device is
 * disconnected cleanly (backend Closing then Closed, engine stopped, image
 * flushed and closed) before the process exits.
 */
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blkback/hv.h"
#include "blkback/sim/sim.h"
#include "blkback/xenbus.h"
#include "fusefs/fs.h"
#include "util/log.h"
#include "util/version.h"

struct opts {
	const char *sim_dir;
	const char *backend_type;
	const char *pidfile;
	const char *mountpoint;
	bool foreground;
	bool verbose;
	bool no_mount;
	bool writable, allow_other;   /* the FUSE tree's options */
	const char *group;
	struct xenbus_config xb;
};

static void usage(FILE *f)
{
	fprintf(f,
"Usage: vbdfs [OPTIONS] [MOUNTPOINT]\n"
"Serve Xen guest disks from raw, qcow2 and qcow images, and show each disk\n"
"under MOUNTPOINT (usually /vbd) as a FUSE tree.\n"
"\n"
"Options:\n"
"  --sim DIR             host a simulated hypervisor at DIR (DIR/xenstored,\n"
"                        DIR/hypervisor) instead of using real Xen\n"
"  -f, --foreground      stay in the foreground, log to stderr\n"
"  --backend-type TYPE   vbdfs (default: disks attached with vbdctl) or vbd\n"
"                        (disks xl creates with backendtype=phy and a no-op\n"
"                        hotplug script; xen-blkback must not be loaded)\n"
"  --pidfile FILE        write the daemon's process id to FILE\n"
"  --no-mount            serve disks without mounting the FUSE tree\n"
"  --writable            MOUNTPOINT/*/disk accept writes (not for read-only disks)\n"
"  --allow-other         let other users past FUSE's own check (-o allow_other)\n"
"  --group GROUP         with --allow-other: GROUP may read the tree\n"
"  --max-queues N        multi-queue-max-queues offered (default: CPUs, max 16)\n"
"  --max-ring-order N    max-ring-page-order offered (0..4, default 4)\n"
"  --max-indirect N      feature-max-indirect-segments offered (default 256,\n"
"                        0 = no indirect requests)\n"
"  --no-persistent       do not offer persistent grants\n"
"  --direct-io           open images with O_DIRECT\n"
"  -v, --verbose         log every XenBus state change (debug level)\n"
"  -h, --help            this help\n"
"  -V, --version         print the version\n"
"\n"
"Without --sim, vbdfs needs a Xen dom0 (/dev/xen/evtchn, /dev/xen/gntdev,\n"
"xenstored).  Signals TERM, INT and HUP disconnect every disk cleanly and exit.\n");
}

static int parse_num(const char *s, unsigned max, unsigned *out, const char *opt)
{
	uint64_t v;

	if (xb_parse_uint(s, max, &v) < 0) {
		fprintf(stderr, "vbdfs: %s wants a number in 0..%u, not '%s'\n", opt, max, s);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

/* 0 ok, 1 = exit 0 (help), -1 = usage error. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	enum { OPT_SIM = 256, OPT_TYPE, OPT_PIDFILE, OPT_NOMOUNT, OPT_MAXQ, OPT_ORDER, OPT_INDIRECT,
	       OPT_NOPERS, OPT_DIRECT, OPT_WRITABLE, OPT_ALLOW_OTHER, OPT_GROUP };
	static const struct option longopts[] = {
		{ "sim", required_argument, NULL, OPT_SIM },
		{ "foreground", no_argument, NULL, 'f' },
		{ "backend-type", required_argument, NULL, OPT_TYPE },
		{ "pidfile", required_argument, NULL, OPT_PIDFILE },
		{ "no-mount", no_argument, NULL, OPT_NOMOUNT },
		{ "writable", no_argument, NULL, OPT_WRITABLE },
		{ "allow-other", no_argument, NULL, OPT_ALLOW_OTHER },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ "max-queues", required_argument, NULL, OPT_MAXQ },
		{ "max-ring-order", required_argument, NULL, OPT_ORDER },
		{ "max-indirect", required_argument, NULL, OPT_INDIRECT },
		{ "no-persistent", no_argument, NULL, OPT_NOPERS },
		{ "direct-io", no_argument, NULL, OPT_DIRECT },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "fvhV", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_SIM: o->sim_dir = optarg; break;
		case 'f': o->foreground = true; break;
		case OPT_TYPE:
			if (strcmp(optarg, "vbdfs") != 0 && strcmp(optarg, "vbd") != 0) {
				fprintf(stderr, "vbdfs: unknown backend type '%s' (use vbdfs or vbd)\n",
					optarg);
				return -1;
			}
			o->backend_type = optarg;
			break;
		case OPT_PIDFILE: o->pidfile = optarg; break;
		case OPT_NOMOUNT: o->no_mount = true; break;
		case OPT_WRITABLE: o->writable = true; break;
		case OPT_ALLOW_OTHER: o->allow_other = true; break;
		case OPT_GROUP: o->group = optarg; break;
		case OPT_MAXQ:
			if (parse_num(optarg, ENGINE_MAX_QUEUES, &o->xb.max_queues, "--max-queues") < 0)
				return -1;
			if (o->xb.max_queues == 0) {
				fprintf(stderr, "vbdfs: --max-queues must be at least 1\n");
				return -1;
			}
			break;
		case OPT_ORDER:
			if (parse_num(optarg, ENGINE_MAX_RING_ORDER, &o->xb.max_ring_order,
				      "--max-ring-order") < 0)
				return -1;
			break;
		case OPT_INDIRECT:
			if (parse_num(optarg, 4096, &o->xb.max_indirect_segs, "--max-indirect") < 0)
				return -1;
			break;
		case OPT_NOPERS: o->xb.no_persistent = true; break;
		case OPT_DIRECT: o->xb.direct_io = true; break;
		case 'v': o->verbose = true; break;
		case 'h': usage(stdout); return 1;
		case 'V': printf("vbdfs %s\n", VBDFS_VERSION); return 1;
		default: usage(stderr); return -1;
		}
	}
	if (optind < argc)
		o->mountpoint = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "vbdfs: unexpected argument '%s' (see --help)\n", argv[optind]);
		return -1;
	}
	if (o->group && !o->allow_other) {
		fprintf(stderr, "vbdfs: --group needs --allow-other\n");
		return -1;
	}
	if (o->group && !getgrnam(o->group)) {
		fprintf(stderr, "vbdfs: --group: no group named '%s'\n", o->group);
		return -1;
	}
	return 0;
}

/*
 * Daemonizing.  Threads do not survive fork(), so the fork comes first:
 * the parent only waits on a pipe for one status byte from the child
 * (0 = running) and exits with it.  The child starts a new session and
 * does all the setup with stderr still on the terminal.
 */
static int ready_fd = -1;

static void daemon_fork(void)
{
	int p[2];
	pid_t pid;
	unsigned char status = 1;

	if (pipe(p) < 0) {
		fprintf(stderr, "vbdfs: pipe: %s\n", strerror(errno));
		exit(1);
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "vbdfs: fork: %s\n", strerror(errno));
		exit(1);
	}
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &status, 1) != 1)
			status = 1; /* the child died before reporting */
		_exit(status);
	}
	close(p[0]);
	ready_fd = p[1];
	setsid();
}

/* Tell the waiting parent how setup went; detach from the terminal. */
static void daemon_ready(unsigned char status)
{
	int fd;

	if (ready_fd < 0)
		return;
	if (status == 0) {
		log_init("vbdfs", log_enabled(VLOG_DEBUG) ? VLOG_DEBUG : VLOG_INFO, true);
		if (chdir("/") < 0)
			log_warn("chdir /: %s", strerror(errno));
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
	}
	if (write(ready_fd, &status, 1) != 1)
		log_warn("cannot report to the parent: %s", strerror(errno));
	close(ready_fd);
	ready_fd = -1;
}

static int write_pidfile(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
		log_err("cannot write pid file %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* True if something already answers on DIR/xenstored: another vbdfs
 * serves this simulator, and starting a second one would steal its
 * sockets from under its guests. */
static bool sim_in_use(const char *dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/xenstored", dir) >=
	    (int)sizeof(sa.sun_path))
		return false;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return r == 0;
}

/*
 * On real Xen, one vbdfs per backend type per host: a second one would
 * connect the same disks again and write the same images.  An flock on
 * /run/vbdfs-TYPE.lock, held (through the daemon's inherited descriptor)
 * until we exit, decides.  -1 if another vbdfs holds it.  If /run is not
 * writable (not root) there is no lock, and Xen itself will refuse us.
 */
static int backend_lock(const char *type)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/run/vbdfs-%s.lock", type ? type : "vbdfs");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_debug("%s: %s (no single-instance lock)", path, strerror(errno));
		return 0;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return 0;  /* fd stays open for the life of the process */
	log_err("another vbdfs already serves backend type %s on this host (it holds %s)",
		type ? type : "vbdfs", path);
	close(fd);
	return -1;
}

/* xenbus lost xenstore: nothing to serve any more, shut down. */
static void xenbus_fatal(const char *why)
{
	log_err("%s; shutting down", why);
	kill(getpid(), SIGTERM);
}

/* The tree was unmounted from outside (fusermount3 -u): stop like on TERM. */
static void fuse_gone(void *arg)
{
	log_info("the FUSE tree was unmounted; shutting down");
	kill(getpid(), SIGTERM);
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct sim *sim = NULL;
	struct hv *hv = NULL;
	struct xenbus *xb = NULL;
	char err[512], path[PATH_MAX];
	sigset_t sigs;
	int sig, r, status = 1;
	bool mounted = false;

	log_init("vbdfs", VLOG_INFO, false);
	xenbus_config_defaults(&o.xb);
	r = parse_args(argc, argv, &o);
	if (r)
		return r > 0 ? 0 : 2;
	if (o.verbose)
		log_set_level(VLOG_DEBUG);
	if (o.mountpoint && !o.no_mount &&
	    vbdfs_fuse_check_mountpoint(o.mountpoint, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return 1;
	}

	/* Signals are taken by sigwait() in this thread only; every thread
	 * started below inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (o.sim_dir && sim_in_use(o.sim_dir)) {
		log_err("%s/xenstored is already served (another vbdfs --sim %s is running)",
			o.sim_dir, o.sim_dir);
		return 1;
	}
	if (!o.sim_dir && backend_lock(o.backend_type) < 0)
		return 1;
	if (!o.foreground)
		daemon_fork();

	if (o.sim_dir) {
		sim = sim_start(o.sim_dir, err, sizeof(err));
		if (!sim) {
			log_err("cannot start the simulated hypervisor at %s: %s", o.sim_dir, err);
			goto out;
		}
		if (snprintf(path, sizeof(path), "%s/xenstored", o.sim_dir) >= (int)sizeof(path)) {
			log_err("--sim path too long");
			goto out;
		}
		setenv("XENSTORED_PATH", path, 1); /* for our own libxenstore client */
		hv = hv_open_sim(o.sim_dir, err, sizeof(err));
	} else {
		hv = hv_open_xen(err, sizeof(err));
	}
	if (!hv) {
		log_err("cannot open the hypervisor: %s%s", err,
			o.sim_dir ? "" : " (not a Xen dom0? try --sim DIR for the simulator)");
		goto out;
	}

	o.xb.hv = hv;
	o.xb.backend_type = o.backend_type;
	o.xb.engine = &xenbus_engine_default;
	o.xb.socket_only = o.sim_dir != NULL;
	o.xb.fatal = xenbus_fatal;
	xb = xenbus_start(&o.xb, err, sizeof(err));
	if (!xb) {
		log_err("%s", err);
		goto out;
	}

	/* The /vbd FUSE tree mounts after the backend is up and before the
	 * daemon detaches, so mount errors reach the terminal. */
	if (o.mountpoint && !o.no_mount) {
		struct vbdfs_fuse_opts fo = {
			.writable = o.writable, .allow_other = o.allow_other,
			.on_unmount = fuse_gone,
		};
		if (o.group) {
			fo.has_group = true;
			fo.group = getgrnam(o.group)->gr_gid; /* checked in parse_args */
		}
		if (vbdfs_fuse_start(o.mountpoint, &fo, err, sizeof(err)) < 0) {
			log_err("%s", err);
			goto out;
		}
		mounted = true;
	}

	if (o.pidfile && write_pidfile(o.pidfile) < 0)
		goto out;
	log_info("vbdfs %s: ready (%s)", o.sim_dir ? "simulator" : "xen",
		 o.sim_dir ? o.sim_dir : "real hypervisor");
	daemon_ready(0);

	for (;;) {
		if (sigwait(&sigs, &sig) != 0)
			continue;
		log_info("signal %s: disconnecting every disk and stopping", strsignal(sig));
		break;
	}
	status = 0;
out:
	if (mounted)
		vbdfs_fuse_stop();   /* first: no reader sees a half-stopped backend */
	xenbus_stop(xb);
	if (hv)
		hv_close(hv);
	if (sim)
		sim_stop(sim);
	if (o.pidfile && status == 0)
		unlink(o.pidfile);
	daemon_ready(1);
	if (status == 0)
		log_info("stopped");
	return status;
}
