/*
 * xenbus_engine.c - the real request engine as xenbus.c calls it.
 * A separate file so that programs and tests which pass their own engine
 * (a fake that records the negotiation) do not pull in engine.c.
 */
#include "xenbus.h"

const struct xenbus_engine_ops xenbus_engine_default = {
	.start = engine_start,
	.stop = engine_stop,
	.set_sectors = engine_set_sectors,
	.format_info = engine_format_info,
};
