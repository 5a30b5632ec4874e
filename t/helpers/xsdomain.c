/*
 * xsdomain - make a domain appear or die in a xenstore, as the hypervisor
 * and xenstored do (for tests without a simulated guest process).
 *
 *   xsdomain introduce DOMID NAME   XS_INTRODUCE, then /local/domain/DOMID/name
 *   xsdomain release DOMID          remove /local/domain/DOMID, XS_RELEASE
 *                                   (which fires @releaseDomain)
 *   xsdomain xl-disk TYPE DOMID DEVID VDEV PARAMS
 *                                   a disk as libxl__device_generic_add
 *                                   writes it for xl: backend and frontend
 *                                   directories with their permissions, in
 *                                   one transaction, no "format" key
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xenstore.h>

static bool put(struct xs_handle *xs, xs_transaction_t t, const char *dir, const char *key,
		const char *val)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	return xs_write(xs, t, path, val, (unsigned)strlen(val));
}

static int xl_disk(struct xs_handle *xs, char **argv)
{
	const char *type = argv[2], *dom = argv[3], *devid = argv[4], *vdev = argv[5];
	const char *params = argv[6];
	char be[256], fe[256];
	unsigned domid = (unsigned)atoi(dom);
	struct xs_permissions bep[2] = { { 0, XS_PERM_NONE }, { domid, XS_PERM_READ } };
	struct xs_permissions fep[2] = { { domid, XS_PERM_NONE }, { 0, XS_PERM_READ } };
	xs_transaction_t t;
	bool ok;

	snprintf(be, sizeof(be), "/local/domain/0/backend/%s/%s/%s", type, dom, devid);
	snprintf(fe, sizeof(fe), "/local/domain/%s/device/vbd/%s", dom, devid);
	do {
		t = xs_transaction_start(xs);
		ok = xs_mkdir(xs, t, be) && xs_set_permissions(xs, t, be, bep, 2) &&
		     put(xs, t, be, "frontend", fe) && put(xs, t, be, "frontend-id", dom) &&
		     put(xs, t, be, "online", "1") && put(xs, t, be, "removable", "0") &&
		     put(xs, t, be, "bootable", "1") && put(xs, t, be, "state", "1") &&
		     put(xs, t, be, "dev", vdev) && put(xs, t, be, "type", "phy") &&
		     put(xs, t, be, "mode", "w") && put(xs, t, be, "params", params) &&
		     put(xs, t, be, "device-type", "disk") &&
		     xs_mkdir(xs, t, fe) && xs_set_permissions(xs, t, fe, fep, 2) &&
		     put(xs, t, fe, "backend", be) && put(xs, t, fe, "backend-id", "0") &&
		     put(xs, t, fe, "state", "1") && put(xs, t, fe, "virtual-device", devid) &&
		     put(xs, t, fe, "device-type", "disk");
		if (!ok) {
			xs_transaction_end(xs, t, true);
			return 1;
		}
	} while (!xs_transaction_end(xs, t, false) && errno == EAGAIN);
	return 0;
}

int main(int argc, char **argv)
{
	struct xs_handle *xs;
	char path[64];
	unsigned domid;
	bool ok;

	if (argc < 3 || (strcmp(argv[1], "introduce") == 0 && argc != 4) ||
	    (strcmp(argv[1], "xl-disk") == 0 && argc != 7)) {
		fprintf(stderr, "usage: xsdomain introduce DOMID NAME | release DOMID | "
			"xl-disk TYPE DOMID DEVID VDEV PARAMS\n");
		return 2;
	}
	domid = (unsigned)atoi(argv[2]);
	xs = xs_open(0);
	if (!xs) {
		perror("xsdomain: xs_open");
		return 1;
	}
	snprintf(path, sizeof(path), "/local/domain/%u", domid);
	if (strcmp(argv[1], "xl-disk") == 0) {
		ok = xl_disk(xs, argv) == 0;
	} else if (strcmp(argv[1], "introduce") == 0) {
		ok = xs_introduce_domain(xs, domid, 0, 0);
		strcat(path, "/name");
		ok = ok && xs_write(xs, XBT_NULL, path, argv[3], (unsigned)strlen(argv[3]));
	} else {
		ok = xs_rm(xs, XBT_NULL, path);
		ok = xs_release_domain(xs, domid) && ok;
	}
	if (!ok)
		perror("xsdomain");
	xs_close(xs);
	return ok ? 0 : 1;
}
