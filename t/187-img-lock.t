#!/bin/sh
# Image locking, against the real QEMU tools: an image the formats layer
# holds writable (t/helpers/imgio) makes qemu-img and qemu-io fail with
# QEMU's own lock messages, and qemu-img -U still reads it; an image a
# qemu-io writer holds is refused to our writable and read-only opens with
# a clear message, and read with -U; vbd-img's -U; create and convert never
# truncate an image in use; a backing file shared by two overlays open at
# once is fine, but nobody may write it meanwhile.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-img.sh"
plan 37

V=$VBD_IMG
IMGIO=$VBDFS_BUILD/t/helpers/imgio
INUSE='is in use by another process \(it holds a QEMU-compatible lock'

# hold NAME FD IMGIO-ARGS... : imgio holding an image open until
# `release NAME FD`; its commands come through a fifo held open on FD, so
# `say FD CMD` drives it, and the open is done when `info` answers.
# Non-zero if the open failed (imgio's message in $T/NAME.err).
trap '' PIPE   # a holder that failed to open must not kill the test
hold() {
    _h=$1; _fd=$2; shift 2
    rm -f "$T/$_h.fifo"; mkfifo "$T/$_h.fifo"
    # (without the other holders' fifos, or closing one would not end it)
    "$IMGIO" "$@" <"$T/$_h.fifo" >"$T/$_h.out" 2>"$T/$_h.err" 5>&- 6>&- &
    eval "HOLD_$_h=\$!"
    at_exit "kill \$HOLD_$_h 2>/dev/null"
    eval "exec $_fd>\"\$T/\$_h.fifo\""
    say "$_fd" info
    wait_for 10 grep -q '^virtual_size=' "$T/$_h.out"
}
say() { _fd=$1; shift; echo "$*" >&"$_fd"; }
# release NAME FD : close its stdin; imgio closes the image and exits
release() {
    eval "exec $2>&-"
    eval "wait \$HOLD_$1"
}

qemu-img create -q -f qcow2 "$T/a.qcow2" 16M
qemu-io -f qcow2 -c 'write -P 0x11 0 1M' "$T/a.qcow2" >/dev/null

# --- (a) we hold it writable: QEMU's tools see our locks
ok "imgio holds a.qcow2 writable" hold A 5 -f qcow2 "$T/a.qcow2"
qcheck "$T/a.qcow2"
is "$?" 1 "qemu-img check (no -U) cannot open it"
like "$(cat "$T/qcheck.out")" 'Failed to get shared "write" lock' "with QEMU's lock message"
ok "qemu-img check -U reads it" qemu-img check -U "$T/a.qcow2"
fails "qemu-io cannot open it writable" qemu-io -f qcow2 -c 'write 0 4k' "$T/a.qcow2"
like "$(cat "$T/last.out")" 'Failed to get "write" lock' "qemu-io: Failed to get \"write\" lock"
fails "qemu-img info without -U fails too" qemu-img info "$T/a.qcow2"
# vbd-img: the same refusal, a clear message, and -U
$V check "$T/a.qcow2" >"$T/out" 2>&1
is "$?" 1 "vbd-img check without -U: exit 1"
like "$(cat "$T/out")" "a.qcow2: $INUSE" "names the image and the lock"
like "$(cat "$T/out")" "pass -U \(--force-share\)" "and says what to do"
ok "vbd-img check -U" $V check -U "$T/a.qcow2"
ok "vbd-img info --force-share" $V info --force-share "$T/a.qcow2"
ok "vbd-img map -U" $V map -U "$T/a.qcow2"
ok "vbd-img read -U sees the data" $V read -U -P 0x11 "$T/a.qcow2" 0 1M
ok "vbd-img convert -U copies it" $V convert -U -O raw "$T/a.qcow2" "$T/copy.raw"
ok "vbd-img compare -U" $V compare -U -f qcow2 -F raw "$T/a.qcow2" "$T/copy.raw"
fails "vbd-img check -U -r leaks is refused (writing needs the lock)" $V check -U -r leaks -f qcow2 "$T/a.qcow2"
fails "vbd-img write is refused" $V write -f qcow2 -P 0x22 "$T/a.qcow2" 0 4k
like "$(cat "$T/last.out")" "$INUSE.*refusing to open it for writing" "for writing, says so"
size=$(stat -c %s "$T/a.qcow2")
fails "vbd-img create over it is refused" $V create -f qcow2 "$T/a.qcow2" 1M
fails "vbd-img convert onto it is refused" $V convert -O qcow2 "$T/copy.raw" "$T/a.qcow2"
is "$(stat -c %s "$T/a.qcow2")" "$size" "the image in use was not truncated"
ok "a second writer in another process (imgio) is refused" sh -c "! '$IMGIO' -f qcow2 '$T/a.qcow2' info 2>'$T/w2.err'"
like "$(cat "$T/w2.err")" "failed to get \"write\" lock\); refusing to open it for writing" "its reason"
ok "imgio exits cleanly after holding it" release A 5
ok "released: qemu-img check clean without -U" qemu-img check "$T/a.qcow2"
ok "and the data is intact" qemu-io -f qcow2 -c 'read -P 0x11 0 1M' "$T/a.qcow2"

# --- (b) a qemu-io writer holds it: we refuse, as qemu-img would
qemu-io -f qcow2 -c 'write -P 0x33 64k 64k' -c 'sleep 60000' "$T/a.qcow2" >/dev/null 2>&1 &
QPID=$!
at_exit "kill $QPID 2>/dev/null"
qemu_holds() { ! qemu-img info "$T/a.qcow2" >/dev/null 2>&1; }
ok "qemu-io holds a.qcow2" wait_for 10 qemu_holds
"$IMGIO" -f qcow2 "$T/a.qcow2" info >/dev/null 2>"$T/err"
is "$?" 2 "our writable open fails"
like "$(cat "$T/err")" "a.qcow2: $INUSE: failed to get \"write\" lock\); refusing to open it for writing" \
    "with the clear message"
"$IMGIO" -r -f qcow2 "$T/a.qcow2" info >/dev/null 2>"$T/err"
is "$?" 2 "our read-only open fails too (as qemu-img info does: it would not share write)"
like "$(cat "$T/err")" "failed to get shared \"write\" lock\); refusing to open it while another process may write it" \
    "with its own message"
ok "a read-only open with force-share reads qemu-io's write" "$IMGIO" -r -U -f qcow2 "$T/a.qcow2" 'read 65536 65536 0x33'
kill "$QPID"; wait "$QPID" 2>/dev/null
ok "after qemu-io exits, our writable open works" "$IMGIO" -f qcow2 "$T/a.qcow2" 'write 1048576 4096 0x44' flush

# --- (d) one backing file, two overlays open at once
qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 "$T/o1.qcow2"
qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 "$T/o2.qcow2"
hold A 5 -f qcow2 "$T/o1.qcow2"
ok "a second overlay of the same backing file opens writable meanwhile" hold B 6 -f qcow2 "$T/o2.qcow2"
fails "but nobody may write the backing file" qemu-io -f qcow2 -c 'write 0 4k' "$T/a.qcow2"
say 5 write 0 65536 0x55; say 6 write 0 65536 0x66
release A 5; release B 6
ok "both overlays wrote their own data over the shared base" sh -c \
    "qemu-io -f qcow2 -c 'read -P 0x55 0 64k' '$T/o1.qcow2' &&
     qemu-io -f qcow2 -c 'read -P 0x66 0 64k' '$T/o2.qcow2'"
done_testing
