#!/bin/sh
# Image locks in vbdfs (one process, real sockets and shared memory):
# while a guest writes a qcow2, qemu-img refuses it without -U; a second
# VBD on the same writable image fails to connect with the reason in the
# backend's error node and log, while the first guest's verified I/O goes
# on and the image passes qemu-img check; once the first detaches, the
# second attaches.  Two overlays of one backing file serve two guests at
# once, a read-only VBD of the base too, and nobody may write the base.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/xb-lib.sh"
need_cmd qemu-img qemu-utils
need_cmd qemu-io qemu-utils
need_cmd xenstore-read xenstore-utils
plan 18
vbdfs_sim || bail_out "vbdfs did not start"

# the same image twice in one vbdfs: the message says the holder is vbdfs itself
HERE='is already open in this process \(another disk uses it, or one that was detached is still held open\)'

qemu-img create -q -f qcow2 "$T/q.qcow2" 32M
sim_guest G1 5 xvda "$T/q.qcow2" qcow2 --verify --rw mix --duration 4s
ok "first guest connected to q.qcow2" wait_xs 10 /local/domain/0/backend/vbdfs/5/51712/state 4
qemu-img check "$T/q.qcow2" >"$T/qc.out" 2>&1
is "$?" 1 "qemu-img check without -U cannot open the image vbdfs serves"
like "$(cat "$T/qc.out")" 'Failed to get shared "write" lock' "QEMU's own lock message"
ok "qemu-img info -U reads it" qemu-img info -U "$T/q.qcow2"

# the same image as a second, writable VBD in the same vbdfs
sim_guest G2 6 xvda "$T/q.qcow2" qcow2 --verify --rw mix --ios 200
isnt_ok=$?
is "$((isnt_ok != 0))" 1 "a second VBD on the same writable image does not connect"
like "$(xenstore-read /local/domain/0/backend/vbdfs/6/51712/error 2>&1)" \
    "cannot open image: $T/q.qcow2: $HERE.*refusing to open it for writing" \
    "the backend's error node says why"
like "$(cat "$T/vbdfs.log")" "6/51712.*$HERE" "and so does the log"
ok "vbdfs is still running" kill -0 $VPID
ok "the first guest's verified I/O completes" wait $G1
like "$(cat "$T/G1.out")" "mismatches=0" "without a mismatch"
kill -9 $G2 2>/dev/null; wait $G2 2>/dev/null
"$VBDCTL" --sim "$SIM" detach 6 xvda --timeout 2 >/dev/null 2>&1
ok "detach the first" "$VBDCTL" --sim "$SIM" detach 5 xvda
ok "qemu-img check clean (no -U: nobody holds it now)" qemu-img check -q "$T/q.qcow2"
sim_guest G3 6 xvda "$T/q.qcow2" qcow2 --verify --rw mix --ios 200
ok "now the other guest attaches it" wait $G3
"$VBDCTL" --sim "$SIM" detach 6 xvda >/dev/null 2>&1

# one backing file under two overlays, and read-only, at once
qemu-img create -q -f qcow2 "$T/base.qcow2" 32M
qemu-io -f qcow2 -c 'write -P 0x5a 0 32M' "$T/base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$T/o1.qcow2"
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$T/o2.qcow2"
sim_guest G4 7 xvda "$T/o1.qcow2" qcow2 --verify --rw mix --duration 3s
sim_guest G5 8 xvda "$T/o2.qcow2" qcow2 --verify --rw mix --duration 3s
sim_guest G6 9 xvda "$T/base.qcow2" ro --rw read --duration 3s
ok "three guests connected on one backing file" sh -c \
    "xenstore-read /local/domain/0/backend/vbdfs/7/51712/state /local/domain/0/backend/vbdfs/8/51712/state /local/domain/0/backend/vbdfs/9/51712/state | tr '\n' ' ' | grep -qx '4 4 4 '"
fails "meanwhile nobody may write the backing file" qemu-io -f qcow2 -c 'write 0 4k' "$T/base.qcow2"
ok "first overlay's guest: verified I/O" wait $G4
ok "second overlay's guest: verified I/O" wait $G5
ok "read-only guest of the base: reads" wait $G6
done_testing
