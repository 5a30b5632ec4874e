#!/bin/sh
# A guest "reboots" (its domain dies, a new domain gets the same disk)
# while a reader holds the old disk's /vbd file open, as a loop mount does.
# The detached disk keeps its image open and locked; attaching the image to
# the new domain shares that open image instead of failing on its own lock:
# the new guest's verified I/O passes, the held file shows what it wrote,
# and once everyone let go the image checks clean.  An image the detached
# disk had only read-only still cannot be attached writable meanwhile, nor
# can a third domain share the image while the new one serves it.
# vbdctl detach warns when a held file keeps the image in use.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-fuse.sh"
need_cmd xenstore-read xenstore-utils
plan 16
mkdir -p "$M"
vbdfs_sim "$M" || bail_out "vbdfs did not start: $(cat "$T/vbdfs.log")"
at_exit "grep -q ' $M fuse' /proc/mounts && fusermount3 -uz '$M'"
HERE='is already open in this process'

qemu-img create -q -f qcow2 "$T/a.qcow2" 16M
sim_guest G1 5 xvda "$T/a.qcow2" qcow2 --verify --rw mix --ios 2000 --seed 1
wait_for 10 test -e "$M/5-51712/disk" || bail_out "no device: $(cat "$T/vbdfs.log")"
exec 3<"$M/5-51712/disk" 4<"$M/5-51712/disk"
ok "the first guest's verified I/O" wait $G1
ok "its domain gone, its directory goes" wait_for 10 test ! -e "$M/5-51712"
cat <&3 >"$T/before.raw"

# the same disk for the "rebooted" guest, a new domain
sim_guest G2 6 xvda "$T/a.qcow2" qcow2 --verify --rw write --duration 3s --seed 2
is "$?" 0 "the image attaches again while the old disk file is held open" ||
    diag_file "$T/G2.attach" "$T/vbdfs.log"
like "$(cat "$T/vbdfs.log")" "6/51712: $T/a.qcow2 is still open for a reader of a detached disk's /vbd files; sharing that open image" \
    "the log says the open image is shared"
# while that guest runs, a third domain may not share the image too
sim_guest G2b 10 xvda "$T/a.qcow2" qcow2 --rw mix --ios 10
isnt_ok=$?
is "$((isnt_ok != 0))" 1 "a second writable attach meanwhile fails"
like "$(xenstore-read /local/domain/0/backend/vbdfs/10/51712/error 2>&1)" "$HERE" \
    "on the lock of the image vbdfs holds"
kill -9 $G2b 2>/dev/null
ok "the new guest's verified I/O" wait $G2
like "$(cat "$T/G2.out")" "mismatches=0" "without a mismatch"
ok "its directory goes too" wait_for 10 test ! -e "$M/6-51712"
qemu-img convert -U -f qcow2 -O raw "$T/a.qcow2" "$T/after.raw"
cat <&4 >"$T/held.raw"
ok "the held file reads as the image now is" cmp "$T/held.raw" "$T/after.raw"
fails "which holds the new guest's writes" cmp -s "$T/before.raw" "$T/after.raw"
exec 3<&- 4<&-
ok "once the reader lets go, qemu-img check (no -U) is clean" \
    wait_for 10 qemu-img check -q "$T/a.qcow2"

# A disk attached read-only, detached while held open: its image was opened
# read-only, which cannot serve a writer, so the writable attach still fails.
sim_guest G3 7 xvda "$T/a.qcow2" ro --rw read --ios 200
wait_for 10 test -e "$M/7-51712/disk"
exec 5<"$M/7-51712/disk"
wait $G3
wait_for 10 test ! -e "$M/7-51712"
sim_guest G4 8 xvda "$T/a.qcow2" qcow2 --rw mix --ios 200
isnt_ok=$?
is "$((isnt_ok != 0))" 1 "a writable attach of the image held read-only fails"
like "$(xenstore-read /local/domain/0/backend/vbdfs/8/51712/error 2>&1)" "$HERE" \
    "and the error node says vbdfs itself holds it"
exec 5<&-
kill -9 $G4 2>/dev/null

# vbdctl detach waits until vbdfs let go of a writable image; if a reader
# still holds the disk's file, it says so after its timeout, and detaches.
sim_guest G5 9 xvda "$T/a.qcow2" qcow2 --rw mix --ios 200
wait_for 10 test -e "$M/9-51712/disk"
exec 6<"$M/9-51712/disk"
wait $G5
"$VBDCTL" --sim "$SIM" detach 9 xvda --timeout 1 2>"$T/detach.err"
is "$?" 0 "detach of a disk whose image a reader holds: exit 0"
like "$(cat "$T/detach.err")" "detached, but its image is still in use: .*a.qcow2" \
    "with a warning that the image is still in use"
exec 6<&-
done_testing
