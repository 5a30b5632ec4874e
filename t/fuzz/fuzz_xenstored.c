/* Fuzz target: the simulator's xenstore protocol engine (xs_process) fed
 * arbitrary bytes on two connections, privileged dom0 and guest dom3.
 * Input: records [conn byte][len byte][len bytes]; bit 0 of the conn byte
 * picks the connection, bit 1 drains that connection's output first.
 * Must never crash, leak, or grow without bound. */
#include <string.h>

#include "blkback/sim/xenstored.h"
#include "fuzz.h"
#include "util/log.h"

static void drain(struct xs_conn *c)
{
	const void *d;
	size_t n;
	while ((n = xs_conn_output(c, &d)) > 0)
		xs_conn_consumed(c, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	log_set_level(VLOG_ERR);
	struct xs_server *s = xs_server_new(NULL, NULL);
	if (!s)
		return 0;
	xs_domain_introduce(s, 3, "fuzz");
	struct xs_conn *c[2] = { xs_conn_new(s, 0), xs_conn_new(s, 3) };
	size_t pos = 0;
	while (c[0] && c[1] && pos + 2 <= size) {
		uint8_t sel = data[pos], len = data[pos + 1];
		pos += 2;
		if (len > size - pos)
			len = (uint8_t)(size - pos);
		struct xs_conn *k = c[sel & 1];
		if (sel & 2)
			drain(k);
		if (!xs_conn_dead(k))
			xs_process(k, data + pos, len);
		pos += len;
	}
	drain(c[0]);
	drain(c[1]);
	xs_domain_release(s, 3);
	xs_server_free(s); /* frees both connections */
	return 0;
}
