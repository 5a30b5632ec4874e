/* Unit tests: endian helpers and the latency histogram. */
#include "util/endian.h"
#include "util/hist.h"
#include "util/tap.h"

static void test_endian(void)
{
	uint8_t b[8] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };
	uint8_t out[8];

	is_int(get_be16(b), 0x0102, "get_be16");
	is_int(get_be32(b), 0x01020304, "get_be32");
	ok(get_be64(b) == 0x0102030405060708ull, "get_be64");
	is_int(get_le16(b), 0x0201, "get_le16");
	is_int(get_le32(b), 0x04030201, "get_le32");
	ok(get_le64(b) == 0x0807060504030201ull, "get_le64");
	put_be64(out, 0xfedcba9876543210ull);
	ok(out[0] == 0xfe && out[7] == 0x10 && get_be64(out) == 0xfedcba9876543210ull,
	   "put_be64 round trip");
	put_le32(out, 0xdeadbeef);
	ok(out[0] == 0xef && out[3] == 0xde, "put_le32 byte order");
	/* unaligned access must work */
	put_be32(out + 1, 0x11223344);
	is_int(get_be32(out + 1), 0x11223344, "unaligned be32");
}

static void test_buckets(void)
{
	int monotonic = 1, covers = 1;

	for (unsigned b = 0; b + 1 < HIST_BUCKETS; b++) {
		if (hist_bucket_high(b) + 1 != hist_bucket_low(b + 1))
			covers = 0;
		if (hist_bucket_low(b) > hist_bucket_low(b + 1))
			monotonic = 0;
	}
	ok(covers, "buckets tile the number line with no gaps");
	ok(monotonic, "bucket bounds increase");
	int inside = 1;
	for (uint64_t v = 1; v < (1ull << 40); v = v * 3 + 1) {
		unsigned b = hist_bucket_of(v);
		if (v < hist_bucket_low(b) || v > hist_bucket_high(b))
			inside = 0;
	}
	ok(inside, "every value falls inside its bucket");
	is_int(hist_bucket_of(0), 0, "0 -> bucket 0");
	is_int(hist_bucket_of(15), 15, "small values are exact");
}

static void test_percentiles(void)
{
	static struct hist h;

	hist_init(&h);
	is_int(hist_percentile(&h, 0.5), 0, "empty histogram: p50 = 0");
	/* 1..1000 us: p50 ~ 500us, p90 ~ 900us, p99 ~ 990us */
	for (uint64_t i = 1; i <= 1000; i++)
		hist_record(&h, i * 1000);
	is_int(hist_count(&h), 1000, "count");
	is_int(hist_max(&h), 1000000, "max");
	is_int(hist_mean(&h), 500500, "mean");
	uint64_t p50 = hist_percentile(&h, 0.50);
	uint64_t p90 = hist_percentile(&h, 0.90);
	uint64_t p99 = hist_percentile(&h, 0.99);
	ok(p50 > 500000 * 0.875 && p50 < 500000 * 1.125, "p50 within 12.5% of 500us");
	ok(p90 > 900000 * 0.875 && p90 < 900000 * 1.125, "p90 within 12.5% of 900us");
	ok(p99 > 990000 * 0.875 && p99 <= 1000000, "p99 near 990us, not above max");
	ok(p50 < p90 && p90 <= p99, "percentiles are ordered");
	is_int(hist_percentile(&h, 1.0), 1000000, "p100 is the max");

	hist_init(&h);
	for (int i = 0; i < 99; i++)
		hist_record(&h, 100);
	hist_record(&h, 50000000);
	ok(hist_percentile(&h, 0.5) < 120, "one outlier does not move p50");
	ok(hist_percentile(&h, 0.999) > 40000000, "p99.9 sees the outlier");
}

int main(void)
{
	plan(25);
	test_endian();
	test_buckets();
	test_percentiles();
	return done_testing();
}
