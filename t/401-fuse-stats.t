#!/bin/sh
# stat, block/<name>/stat, diskstats and stats count exactly what the
# engine accounted, and stock sysstat `iostat -x -f MOUNT` reports each VBD
# with moving r/s and w/s.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-fuse.sh"
need_cmd iostat sysstat
plan 17

qemu-img create -q -f raw "$T/a.raw" 16M
qemu-img create -q -f raw "$T/b.raw" 16M
start_tree
tcmd add 5 51712 raw "$T/a.raw" xvda web1
tcmd add 6 51728 raw "$T/b.raw" xvdb db1
S=$M/5-51712
is "$(cat "$S/stat")" "$(printf '%8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d' 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0)" \
    "a fresh device: 17 zero fields, sysfs layout"
ok "simulate 100 reads of 8 sectors" tcmd io 5-51712 read 100 0 8
ok "simulate 40 writes of 16 sectors" tcmd io 5-51712 write 40 4096 16
tcmd io 5-51712 discard 3 0 2048 && tcmd io 5-51712 flush 2 0 0 && tcmd io 5-51712 read 5 0 8 -1
ok "simulated discards, flushes and failed reads" test $? = 0
set -- $(cat "$S/stat")
is "$#" 17 "stat has 17 fields"
is "$1 $2 $3 $5 $7 $9 ${12} ${14} ${16}" "100 0 800 40 640 0 3 6144 2" \
    "reads, sectors, writes, sectors, in flight, discards, sectors, flushes"
like "$(cat "$S/stat")" '^( +[0-9]+){16} +[0-9]+$' "every field an integer"
is "$(cat "$M/block/vbd-5-51712/stat")" "$(cat "$S/stat")" "block/vbd-5-51712/stat is the same line"
line=$(grep ' vbd-5-51712 ' "$M/diskstats")
is "$(echo "$line" | awk '{print $1, $2, $3, $4, $6, $8, $10}')" "202 0 vbd-5-51712 100 800 40 640" \
    "diskstats: major minor name and counters"
is "$(echo "$line" | awk '{print NF}')" 20 "diskstats: 3 + 17 fields"
is "$(grep -c . "$M/diskstats")" 2 "diskstats: one line per device"
stats=$(cat "$S/stats")
is "$(printf '%s\n' "$stats" | grep -E '^(read|write)_(requests|errors):' | tr '\n' ' ')" \
    "read_requests: 100 read_errors: 5 write_requests: 40 write_errors: 0 " "stats: counts and errors"
like "$stats" "read_latency_p99_us: [0-9]+\.[0-9]" "stats: latency percentiles"
tcmd batch 5-51712 4 7 && tcmd batch 5-51712 2 3
stats=$(cat "$S/stats")
is "$(printf '%s\n' "$stats" | grep -E '^(batches|batched_reqs|reqs_per_batch|ring_occupancy_max):' | tr '\n' ' ')" \
    "ring_occupancy_max: 7 batches: 2 batched_reqs: 6 reqs_per_batch: 3.00 " "stats: batching and ring occupancy"
# iostat: two reports a second apart while both devices do I/O.
tcmd spin 5-51712 4 && tcmd spin 6-51728 4
iostat -x -f "$M" 1 3 >"$T/iostat.out" 2>&1
rows=$(awk '$1 ~ /^vbd-/' "$T/iostat.out" | tail -n 2)
printf '%s\n' "$rows" | sed 's/^/# /' >&2
is "$(printf '%s\n' "$rows" | awk '{print $1}' | sort | tr '\n' ' ')" "vbd-5-51712 vbd-6-51728 " \
    "iostat -x -f reports both VBDs"
# Header columns: r/s is field 2, w/s field 8 (sysstat 12.6 -x layout).
hdr=$(grep -m1 '^Device' "$T/iostat.out")
rcol=$(echo "$hdr" | tr -s ' ' '\n' | grep -n '^r/s$' | cut -d: -f1)
wcol=$(echo "$hdr" | tr -s ' ' '\n' | grep -n '^w/s$' | cut -d: -f1)
is "$(printf '%s\n' "$rows" | awk -v r="$rcol" -v w="$wcol" '($r + 0 > 0 && $w + 0 > 0) {n++} END {print n+0}')" 2 \
    "r/s and w/s move for both during the workload"
ok "the tree stops cleanly (exit 0)" stop_tree
done_testing
