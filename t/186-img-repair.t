#!/bin/sh
# vbd-img check -r all: rebuilding qcow2 refcounts from the references.
# Real dirty images come from qemu-io with lazy refcounts killed by
# SIGKILL mid-session (qemu-io's own sigraise), as a host crash leaves
# them: stored refcounts too low, refcount blocks missing, the dirty bit
# set.  After the repair qemu-img check finds nothing, the guest data is
# what qemu-io wrote, the dirty bit is clear, and the image takes writes
# (from vbdfs' own writer, checked by qemu-img again).  Corruptions that
# are not refcount ones are reported and left alone.  (t/302: the backend
# refuses to serve a dirty image writable, naming this command.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-img.sh"
plan 22

V=$VBD_IMG
IMGIO=$VBDFS_BUILD/t/helpers/imgio

# dirty IMG SIZE [qemu-img create options] : a qcow2 left dirty by a
# writer with lazy refcounts that died; its data, as written, in IMG.raw
dirty() {
    _img=$1 _size=$2; shift 2
    qemu-img create -q -f qcow2 -o lazy_refcounts=on "$@" "$_img" "$_size"
    qemu-io -f qcow2 -c 'write -P 0x33 0 3M' -c 'write -P 0x44 20M 1M' \
        -c 'write -P 0x55 60M 512k' -c 'sigraise 9' "$_img" >/dev/null 2>&1
    qemu-img convert -f qcow2 -O raw "$_img" "$_img.raw"
}

# repaired IMG NAME : the checks every repaired image must pass (5)
repaired() {
    $V check -r all -f qcow2 "$1" >"$T/out" 2>"$T/err"
    is "$?" 0 "$2: vbd-img check -r all: exit 0"
    like "$(tr '\n' ' ' <"$T/out")" "[1-9][0-9]* corruptions .*Double checking.*No errors" \
        "$2: says what it repaired"
    ok "$2: qemu-img check: clean" qemu-img check -q "$1"
    ok "$2: the data is what was written" qemu-img compare -q -f qcow2 -F raw "$1" "$1.raw"
    is "$(qinfo "$1" '."dirty-flag"')" false "$2: dirty bit clear"
}

dirty "$T/a.qcow2" 64M
is "$(qinfo "$T/a.qcow2" '."dirty-flag"')" true "qemu-io left the image dirty"
qcheck "$T/a.qcow2"; is "$?" 2 "qemu-img check: refcounts too low (exit 2)"
$V check "$T/a.qcow2" >/dev/null 2>&1
is "$?" 2 "vbd-img check agrees (exit 2)"
$V check -r leaks -f qcow2 "$T/a.qcow2" >/dev/null 2>"$T/err"
is "$?" 1 "-r leaks does not repair a dirty image (exit 1: not checked)..."
like "$(cat "$T/err")" "dirty.*vbd-img check -r all" "... and says what does"
repaired "$T/a.qcow2" "64 KiB clusters"
"$IMGIO" -f qcow2 "$T/a.qcow2" "write 10485760 1048576 0x66" "write 0 4096 0x77" >/dev/null &&
    qemu-io -f raw -c 'write -P 0x66 10M 1M' -c 'write -P 0x77 0 4k' "$T/a.qcow2.raw" >/dev/null
ok "the repaired image takes writes: qemu-img check clean" qemu-img check -q "$T/a.qcow2"
ok "... and holds them" qemu-img compare -q -f qcow2 -F raw "$T/a.qcow2" "$T/a.qcow2.raw"

# small clusters: the new refcount table spans several clusters
dirty "$T/s.qcow2" 64M -o cluster_size=512
repaired "$T/s.qcow2" "512-byte clusters"

# 1-bit refcounts with the data shared by an internal snapshot: 2
# references do not fit; nothing is written
qemu-img create -q -f qcow2 -o refcount_bits=1 "$T/r1.qcow2" 8M
qemu-io -f qcow2 -c 'write -P 1 0 64k' "$T/r1.qcow2" >/dev/null
cp "$T/r1.qcow2" "$T/r1.before"
perl -e 'open F,"+<",$ARGV[0]; seek F,72,0; print F pack("Q>",1)' "$T/r1.qcow2" # dirty bit
$V check -r all -f qcow2 "$T/r1.qcow2" >/dev/null 2>&1
is "$?" 0 "a dirty image with right refcounts: the bit is just cleared"
is "$(qinfo "$T/r1.qcow2" '."dirty-flag"')" false "dirty bit clear"

# structural damage (an L2 entry with reserved bits): reported, not repaired
qemu-img create -q -f qcow2 "$T/l2.qcow2" 8M
qemu-io -f qcow2 -c 'write -P 1 0 64k' "$T/l2.qcow2" >/dev/null
l2=$(perl -e 'open F,"<",$ARGV[0]; seek F,40,0; read F,$b,8; $l1=unpack("Q>",$b);
              seek F,$l1,0; read F,$b,8; print unpack("Q>",$b) & 0x00fffffffffffe00' "$T/l2.qcow2")
patch "$T/l2.qcow2" $((l2 + 8)) 'Q>' 0x0000000000000200   # entry 1: misaligned offset
perl -e 'open F,"+<",$ARGV[0]; seek F,72,0; print F pack("Q>",1)' "$T/l2.qcow2"
sum=$(md5sum <"$T/l2.qcow2")
$V check -r all -f qcow2 "$T/l2.qcow2" >"$T/out" 2>"$T/err"
is "$?" 2 "structural corruption: exit 2"
like "$(cat "$T/err")" "cannot repair: 1 corruptions are not refcount errors" "says why it does not repair"
is "$(md5sum <"$T/l2.qcow2")" "$sum" "the image was not written"

done_testing
