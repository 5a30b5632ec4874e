#!/bin/sh
# requests is a log: one blkparse-style line per completed request, its
# size the bytes so far; a reader from the end (lseek SEEK_END) gets what is
# added, blocking for the next; concurrent readers each see everything; head
# reads from the log's start and stops cleanly; O_NONBLOCK gives EAGAIN;
# poll() works; a slow reader is told how many it missed; removal ends the
# log (EOF at its end).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-fuse.sh"
PROBE=$VBDFS_BUILD/t/helpers/fuseprobe
plan 23

qemu-img create -q -f raw "$T/a.raw" 16M
start_tree
tcmd add 5 51712 raw "$T/a.raw" xvda web1
R=$M/5-51712/requests

# reader_start NAME ARGS... : a fuseprobe reader from the end of the log, in
# the background, once open
reader_start() {
    _n=$1; shift
    "$PROBE" follow "$R" "$@" >"$T/$_n.out" 2>"$T/$_n.err" &
    eval "${_n}_pid=$!"
    wait_for 10 grep -q '^open' "$T/$_n.err"
}

tcmd io 5-51712 read 7 0 8   # in the log, not for readers from its end
reader_start r1 3
tcmd io 5-51712 write 1 2048 16 0 3
tcmd io 5-51712 read 1 4096 8 -1
tcmd io 5-51712 flush 1 0 0
wait_exit $r1_pid 10; is $? 0 "a reader from the end gets exactly the requests added"
sed -n 1p "$T/r1.out" | grep -Eq '^202,0    3        8 +[0-9]+\.[0-9]{9}     5  C   W 2048 \+ 16 \[0\] [0-9]+\.[0-9]{3}us$'
is $? 0 "write line: dev, queue, seq, time, domid, C, RWBS, sector + count, status, latency"
like "$(sed -n 2p "$T/r1.out")" '  C   R 4096 \+ 8 \[-1\] ' "failed read shows status -1"
like "$(sed -n 3p "$T/r1.out")" '  C  FN 0 \+ 0 \[0\] ' "flush is FN"

reader_start r2 50
reader_start r3 50
tcmd io 5-51712 read 50 0 8
wait_exit $r2_pid 10; rc2=$?
wait_exit $r3_pid 10; rc3=$?
is "$rc2 $rc3" "0 0" "two concurrent readers both finish"
is "$(awk '{print $8}' "$T/r2.out" | tr '\n' ' ')" "$(awk '{print $8}' "$T/r3.out" | tr '\n' ' ')" "they saw the same requests"
is "$(awk '{s += $8} END {print NR, s}' "$T/r2.out")" "50 9800" "all 50, in order of sector"

head -n 100 "$R" >"$T/head.out" &
hpid=$!
sleep 0.3
tcmd io 5-51712 read 150 0 8
wait_exit $hpid 10; is $? 0 "head -n 100 exits"
is "$(wc -l <"$T/head.out")" 100 "with 100 lines"
like "$(sed -n 1p "$T/head.out")" '^# requests of 5-51712 \(202,0\), one line each as they complete: see vbdfs\(8\)$' \
    "from the start of the log: its header line"
is "$(awk 'NR == 2 || NR == 100 {print $3}' "$T/head.out" | tr '\n' ' ')" "1 99 " \
    "then requests 1 to 99"

# tail -f: the last lines, then each new one (tail polls the size).
tail -n 5 -f "$R" >"$T/tail.out" 2>"$T/tail.err" &
tpid=$!
at_exit "kill $tpid 2>/dev/null"
wait_for 10 test -s "$T/tail.out"
tcmd io 5-51712 write 3 9000 8
wait_for 10 test "$(wc -l <"$T/tail.out")" -ge 8
kill $tpid
is "$(awk '{print $6 == "C" ? $7 $8 : "?"}' "$T/tail.out" | tr '\n' ' ')" \
    "R1160 R1168 R1176 R1184 R1192 W9000 W9008 W9016 " "tail -n 5 -f: the last 5, then the 3 new ones"

s1=$(stat -c %s "$R")
tcmd io 5-51712 discard 1 64 8
s2=$(stat -c %s "$R")
tail -c $((s2 - s1)) "$R" >"$T/last.out"
like "$(cat "$T/last.out")" '^202,0 +0 +[0-9]+ +[0-9.]+ +5  C   D 64 \+ 8 \[0\] [0-9.]+us$' \
    "the size grows by the new line, which is at the end (tail -c)"
is "$(wc -c <"$T/last.out")" $((s2 - s1)) "exactly one line"

ok "O_NONBLOCK read with nothing new: EAGAIN" "$PROBE" eagain "$R"
ok "poll() says not readable when idle" "$PROBE" pollidle "$R" 300
reader_start r4 5 - poll
tcmd io 5-51712 write 5 0 8
wait_exit $r4_pid 10; is $? 0 "a poll()ing non-blocking reader is woken"

# A reader that waits while 70000 requests complete (the trace keeps 65536).
reader_start r5 2 "$T/go"
tcmd io 5-51712 read 70000 0 8
touch "$T/go"
wait_exit $r5_pid 10; is $? 0 "slow reader reads"
is "$(sed -n 1p "$T/r5.out")" "# missed 4464 requests" "it is told how many it missed"

timeout -s INT 1 cat "$R" >/dev/null; rc=$?
is "$rc" 124 "a blocked reader is interrupted by a signal"

# The log of a device that went away stays readable to its end.
"$PROBE" follow "$R" 0 >"$T/cat.out" &
cpid=$!
sleep 0.3
tcmd io 5-51712 read 2 0 8
tcmd del 5-51712
wait_exit $cpid 10; is $? 0 "device removal ends the log (EOF)"
is "$(wc -l <"$T/cat.out")" 2 "after delivering what was there"
ok "the tree stops cleanly (exit 0)" stop_tree
done_testing
