#!/bin/sh
# vbdfs as a daemon: it forks before starting any thread, reports start-up
# errors on the terminal with a non-zero status, writes its pid file,
# serves guests after detaching, and removes the pid file on SIGTERM.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/xb-lib.sh"
plan 19
SIM=$T/sim
XENSTORED_PATH=$SIM/xenstored
export XENSTORED_PATH

# Start-up errors: visible, exit status 1 (2 for usage).
"$VBDFS" --sim /proc/vbdfs-no-such-dir 2>"$T/err"
is "$?" 1 "unusable --sim directory: exit 1"
like "$(cat "$T/err")" "cannot start the simulated hypervisor at /proc/vbdfs-no-such-dir" "error on the terminal"
"$VBDFS" --sim "$SIM" "$T/no-such-mountpoint" 2>"$T/err"
is "$?" 1 "missing mount point: exit 1"
like "$(cat "$T/err")" "mount point .*no-such-mountpoint" "mount point named"
if [ -c /dev/xen/evtchn ]; then
    skip 2 "this machine is a Xen dom0"
else
    "$VBDFS" -f 2>"$T/err"
    is "$?" 1 "no Xen and no --sim: exit 1"
    like "$(cat "$T/err")" "try --sim" "hint at --sim"
fi
"$VBDFS" --max-queues 0 2>/dev/null
is "$?" 2 "--max-queues 0: usage error"
"$VBDFS" --backend-type tap 2>/dev/null
is "$?" 2 "unknown backend type: usage error"

# A daemon.
ok "vbdfs daemonizes" "$VBDFS" --sim "$SIM" --pidfile "$T/pid" --no-mount
like "$(cat "$T/last.out")" "ready" "start-up messages shown before detaching"
PID=$(cat "$T/pid")
at_exit "kill $PID 2>/dev/null"
ok "pid file names a running process" kill -0 "$PID"
is "$(ps -o sid= -p "$PID" | tr -d ' ')" "$PID" "the daemon leads its own session"

"$VBDFS" --sim "$SIM" -f 2>"$T/err"
is "$?" 1 "a second vbdfs on the same simulator directory: exit 1"
like "$(cat "$T/err")" "already served" "says another vbdfs serves it"

# It serves a guest (its threads were started after the fork).
truncate -s 16M "$T/d.img"
"$VBD_FRONT" --sim "$SIM" --domid 3 --wait --verify --ios 500 xvda >"$T/g.out" 2>&1 &
GPID=$!
at_exit "kill -9 $GPID 2>/dev/null"
wait_for 10 xenstore-read /local/domain/3/name
ok "attach to the daemon's simulator" "$VBDCTL" --sim "$SIM" attach 3 xvda "$T/d.img" --format raw --wait 5
ok "guest verified I/O through the daemon" wait $GPID

kill -TERM "$PID"
ok "daemon exits on SIGTERM" wait_for 10 sh -c "! kill -0 $PID 2>/dev/null"
fails "pid file removed" test -e "$T/pid"
fails "simulator sockets gone" test -S "$SIM/xenstored"
done_testing
