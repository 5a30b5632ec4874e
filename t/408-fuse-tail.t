#!/bin/sh
# /vbd/<dev>/requests under real readers, while a vbd-front guest runs a
# known number of requests: tail -f, tail -F and tail -n 100 -f (coreutils
# polls the growing size on FUSE) print every line as it completes, with no
# gap, up to the guest's last request; head -n 100 reads the first 100; a
# blocking cat gets every line and ends when the device goes away; a device
# that went away still answers fstat for an open log.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-fuse.sh"
need_cmd xenstore-read xenstore-utils
need_cmd tail coreutils
plan 13
SIM=$T/sim
XENSTORED_PATH=$SIM/xenstored
export XENSTORED_PATH
IOS=20000

mkdir -p "$M"
"$VBDFS" --sim "$SIM" -f "$M" >"$T/vbdfs.log" 2>&1 &
VPID=$!
at_exit "kill $VPID 2>/dev/null; wait $VPID 2>/dev/null; grep -q ' $M fuse' /proc/mounts && fusermount3 -uz '$M'"
wait_for 10 grep -q "ready" "$T/vbdfs.log" || bail_out "vbdfs did not start: $(cat "$T/vbdfs.log")"

# One queue, one request in flight, no flushes: exactly $IOS requests, in
# the order they complete, sequence numbers 1 to $IOS.  The guest is
# stopped once it has registered, so the readers are there before its
# first request: vbdfs puts the device in the tree when the disk is
# attached, before the guest connects.
qemu-img create -q -f raw "$T/a.raw" 64M
"$VBD_FRONT" --sim "$SIM" --domid 5 --name web1 --wait --rw read --pattern rand \
    --queues 1 --qd 1 --no-flush --ios $IOS xvda >"$T/g.out" 2>&1 &
GPID=$!
at_exit "kill -CONT $GPID 2>/dev/null; kill -9 $GPID 2>/dev/null"
wait_for 10 xenstore-read /local/domain/5/name
kill -STOP $GPID
"$VBDCTL" --sim "$SIM" attach 5 xvda "$T/a.raw" --format raw --wait 5 >"$T/attach.out" 2>&1 ||
    diag "attach failed: $(cat "$T/attach.out")"
R=$M/5-51712/requests
wait_for 10 test -e "$R" || bail_out "no device: $(cat "$T/g.out" "$T/vbdfs.log")"

tail -f "$R" >"$T/f.out" 2>"$T/f.err" &
F=$!
tail -F "$R" >"$T/ff.out" 2>"$T/ff.err" &
FF=$!
tail -n 100 -f "$R" >"$T/n.out" 2>"$T/n.err" &
N=$!
head -n 100 "$R" >"$T/head.out" &
H=$!
cat "$R" >"$T/cat.out" &
C=$!
at_exit "kill $F $FF $N $H $C 2>/dev/null"
sleep 0.5
kill -CONT $GPID
wait_exit $GPID 60; is $? 0 "the guest ran $IOS reads"

# seqs FILE : "first last count gaps" of the request lines in FILE
seqs() {
    awk '/  C / { if (n && $3 != last + 1) gaps++; if (!n) first = $3; last = $3; n++ }
         END { printf "%d %d %d %d\n", first, last, n, gaps }' "$1"
}
# until_last FILE : wait (at most 20 s) for the line of request $IOS
until_last() { wait_for 20 awk -v s=$IOS '$3 == s { f = 1 } END { exit !f }' "$1"; }

until_last "$T/f.out"
set -- $(seqs "$T/f.out")
is "$2 $4" "$IOS 0" "tail -f: every line up to the guest's last, no gap"
is "$1 $3" "1 $IOS" "all of them, from the first"
like "$(sed -n 1p "$T/f.out")" '^# requests of 5-51712 \(202,0\)' "after the log's header line"

until_last "$T/ff.out"
set -- $(seqs "$T/ff.out")
is "$2 $4" "$IOS 0" "tail -F: the same"

until_last "$T/n.out"
set -- $(seqs "$T/n.out")
is "$1 $2 $3 $4" "1 $IOS $IOS 0" "tail -n 100 -f: the same"

wait_exit $H 10; is $? 0 "head -n 100 exits"
is "$(seqs "$T/head.out")" "1 99 99 0" "with the header and requests 1 to 99"

# The guest has closed the device: it leaves the tree and its log ends.
wait_exit $C 20; is $? 0 "cat ends (EOF) when the device goes away"
is "$(seqs "$T/cat.out")" "1 $IOS $IOS 0" "after every line of the log"
ok "the device left the tree" wait_for 10 test ! -e "$M/5-51712"
sleep 1.5
ok "tail -f still follows the open log (fstat works)" kill -0 $F
like "$(cat "$T/f.err" "$T/ff.err" "$T/n.err")" '^$|has become inaccessible|No such file' \
    "tail says nothing but, for -F, that the name went away"
kill $F $FF $N 2>/dev/null
done_testing
