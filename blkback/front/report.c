/*
 * report.c - what vbd-front prints: the device list (--list) and the
 * workload report, as text or JSON (--json).
 */
#include "dev.h"

#include <stdio.h>

static const char *onoff(bool b)
{
	return b ? "1" : "0";
}

void vf_report_list(const struct vf_dev *d, bool json, bool first)
{
	if (json) {
		printf("%s    {\"devid\": %u, \"vdev\": \"%s\", \"backend\": \"%s\", \"sectors\": %llu, "
		       "\"sector_size\": %u, \"physical_sector_size\": %u, \"info\": %u, "
		       "\"protocol\": \"%s\", \"ring_page_order\": %u, \"queues\": %u, "
		       "\"persistent\": %s, \"indirect_segments\": %u, \"flush\": %s, \"barrier\": %s, "
		       "\"discard\": %s, \"discard_granularity\": %u, \"discard_secure\": %s, "
		       "\"backend_max_ring_page_order\": %u, \"backend_max_queues\": %u, "
		       "\"backend_max_indirect_segments\": %u, \"backend_persistent\": %s}",
		       first ? "" : ",\n", d->devid, d->vdev, d->be, (unsigned long long)d->sectors, d->sector_size,
		       d->phys_sector_size, d->info, blkif_abi_name(d->abi), d->ring_order,
		       d->nr_queues, d->persistent ? "true" : "false", d->indirect,
		       d->flush ? "true" : "false", d->barrier ? "true" : "false",
		       d->discard ? "true" : "false", d->discard_gran,
		       d->discard_secure ? "true" : "false", d->be_max_order, d->be_max_queues,
		       d->be_max_indirect, d->be_persistent ? "true" : "false");
		return;
	}
	printf("%u %s sectors=%llu sector-size=%u physical-sector-size=%u info=%u protocol=%s "
	       "ring-page-order=%u queues=%u persistent=%s indirect=%u flush=%s barrier=%s "
	       "discard=%s discard-granularity=%u discard-secure=%s\n",
	       d->devid, d->vdev[0] ? d->vdev : "-", (unsigned long long)d->sectors, d->sector_size,
	       d->phys_sector_size, d->info, blkif_abi_name(d->abi), d->ring_order, d->nr_queues,
	       onoff(d->persistent), d->indirect, onoff(d->flush), onoff(d->barrier), onoff(d->discard),
	       d->discard_gran, onoff(d->discard_secure));
}

static const char *queue_problem(const struct vf_dev *d)
{
	for (unsigned i = 0; i < d->nr_queues; i++)
		if (d->queue[i].broken)
			return d->queue[i].why;
	return NULL;
}

bool vf_dev_ok(struct vf_dev *d)
{
	struct vf_stats *s = &d->stats;

	return !d->error[0] && !queue_problem(d) && !s->st_error && !s->st_eopnotsupp &&
	       !s->st_other && !s->bad_responses && !s->mismatches && !s->grant_leaks;
}

void vf_report_dev(struct vf_dev *d, bool json, bool first)
{
	struct vf_stats *s = &d->stats;
	double secs = d->elapsed_ns ? (double)d->elapsed_ns / 1e9 : 1e-9;
	const char *prob = d->error[0] ? d->error : queue_problem(d);

	if (json) {
		printf("%s    {\"devid\": %u, \"vdev\": \"%s\", \"ok\": %s, \"seconds\": %.3f, \"ops\": {",
		       first ? "" : ",\n", d->devid, d->vdev, vf_dev_ok(d) ? "true" : "false", secs);
		for (int op = 0; op < VF_NR_OPS; op++) {
			struct hist *h = &s->lat[op];

			printf("%s\"%s\": {\"ios\": %llu, \"bytes\": %llu, \"iops\": %.1f, "
			       "\"mib_s\": %.2f, \"lat_ns\": {\"p50\": %llu, \"p90\": %llu, \"p99\": %llu, "
			       "\"max\": %llu}}",
			       op ? ", " : "", vf_op_name(op), (unsigned long long)s->ios[op],
			       (unsigned long long)s->bytes[op], (double)s->ios[op] / secs,
			       (double)s->bytes[op] / secs / 1048576.0,
			       (unsigned long long)hist_percentile(h, 0.5),
			       (unsigned long long)hist_percentile(h, 0.9),
			       (unsigned long long)hist_percentile(h, 0.99),
			       (unsigned long long)hist_max(h));
		}
		printf("}, \"requests\": %llu, \"errors\": {\"error\": %llu, \"eopnotsupp\": %llu, "
		       "\"other\": %llu, \"bad_responses\": %llu, \"grant_leaks\": %llu}, "
		       "\"notifications\": {\"sent\": %llu, \"received\": %llu}, "
		       "\"verify\": {\"sectors\": %llu, \"mismatches\": %llu}, \"problem\": ",
		       (unsigned long long)s->reqs, (unsigned long long)s->st_error,
		       (unsigned long long)s->st_eopnotsupp, (unsigned long long)s->st_other,
		       (unsigned long long)s->bad_responses, (unsigned long long)s->grant_leaks,
		       (unsigned long long)s->notify_out, (unsigned long long)s->notify_in,
		       (unsigned long long)s->verified_sectors, (unsigned long long)s->mismatches);
		if (prob) {
			putchar('"');
			for (const char *p = prob; *p; p++)
				if (*p == '"' || *p == '\\')
					printf("\\%c", *p);
				else if ((unsigned char)*p >= 0x20)
					putchar(*p);
			putchar('"');
		} else {
			printf("null");
		}
		printf("}");
		return;
	}
	printf("device %u (%s): %.2f s, %llu requests, %s\n", d->devid, d->vdev[0] ? d->vdev : "-",
	       secs, (unsigned long long)s->reqs, vf_dev_ok(d) ? "OK" : "FAILED");
	for (int op = 0; op < VF_NR_OPS; op++) {
		struct hist *h = &s->lat[op];

		if (!s->ios[op])
			continue;
		printf("  %-7s ios=%llu iops=%.0f MiB/s=%.2f lat(us) p50=%.1f p90=%.1f p99=%.1f "
		       "max=%.1f\n",
		       vf_op_name(op), (unsigned long long)s->ios[op], (double)s->ios[op] / secs,
		       (double)s->bytes[op] / secs / 1048576.0, hist_percentile(h, 0.5) / 1e3,
		       hist_percentile(h, 0.9) / 1e3, hist_percentile(h, 0.99) / 1e3,
		       hist_max(h) / 1e3);
	}
	printf("  errors: error=%llu eopnotsupp=%llu other=%llu bad-responses=%llu grant-leaks=%llu\n",
	       (unsigned long long)s->st_error, (unsigned long long)s->st_eopnotsupp,
	       (unsigned long long)s->st_other, (unsigned long long)s->bad_responses,
	       (unsigned long long)s->grant_leaks);
	printf("  notifications: sent=%llu received=%llu\n", (unsigned long long)s->notify_out,
	       (unsigned long long)s->notify_in);
	if (s->verified_sectors || s->mismatches)
		printf("  verify: sectors=%llu mismatches=%llu\n",
		       (unsigned long long)s->verified_sectors, (unsigned long long)s->mismatches);
	if (prob)
		printf("  problem: %s\n", prob);
}
