/* qcow2_check.c - placeholder until the checker lands. */
#include "formats/qcow2_int.h"

#include <errno.h>

int qcow2_check(struct img *img, bool fix_leaks, struct img_check_result *res)
{
	return -ENOTSUP;
}
