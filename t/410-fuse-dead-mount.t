#!/bin/sh
# A vbdfs killed with SIGKILL leaves its FUSE mount behind, dead (every
# access fails with ENOTCONN).  The next vbdfs on the same mount point
# detaches that dead mount, says so, and serves a working tree, so a
# restart after a crash (systemd's Restart=on-failure) succeeds.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-fuse.sh"
plan 8
SIM=$T/sim
mkdir -p "$M"

start() {
    rm -f "$T/vbdfs.log"
    "$VBDFS" --sim "$SIM" -f "$@" "$M" >"$T/vbdfs.log" 2>&1 &
    VPID=$!
    at_exit "kill -9 $VPID 2>/dev/null; grep -q ' $M fuse' /proc/mounts && fusermount3 -uz '$M'"
    wait_for 10 grep -q "ready" "$T/vbdfs.log" && wait_for 10 test -f "$M/diskstats"
}

ok "vbdfs --sim mounts the tree" start
kill -9 "$VPID"; wait "$VPID" 2>/dev/null
ok "after SIGKILL the mount is still there" grep -q " $M fuse.vbdfs" /proc/mounts
like "$(ls "$M" 2>&1)" "Transport endpoint is not connected" "and it is dead"
ok "a new vbdfs starts on the same mount point" start
like "$(cat "$T/vbdfs.log")" "a previous vbdfs died and left its mount; detached it" \
    "it says it detached the dead mount"
ok "its tree answers" test -f "$M/diskstats"
is "$(grep -c " $M fuse.vbdfs" /proc/mounts)" 1 "one vbdfs mount there, not two"
kill "$VPID"
wait_exit "$VPID" 20
is "$?:$(grep -c " $M fuse" /proc/mounts)" "0:0" "SIGTERM: exit 0 and unmounted"
