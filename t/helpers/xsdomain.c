/*
 * xsdomain - make a domain appear or die in a xenstore, as the hypervisor
 * and xenstored do (for tests without a simulated guest process).
 *
 *   xsdomain introduce DOMID NAME   XS_INTRODUCE, then /local/domain/DOMID/name
 *   xsdomain release DOMID          remove /local/domain/DOMID, XS_RELEASE
 *                                   (which fires @releaseDomain)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xenstore.h>

int main(int argc, char **argv)
{
	struct xs_handle *xs;
	char path[64];
	unsigned domid;
	bool ok;

	if (argc < 3 || (strcmp(argv[1], "introduce") == 0 && argc != 4)) {
		fprintf(stderr, "usage: xsdomain introduce DOMID NAME | release DOMID\n");
		return 2;
	}
	domid = (unsigned)atoi(argv[2]);
	xs = xs_open(0);
	if (!xs) {
		perror("xsdomain: xs_open");
		return 1;
	}
	snprintf(path, sizeof(path), "/local/domain/%u", domid);
	if (strcmp(argv[1], "introduce") == 0) {
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
