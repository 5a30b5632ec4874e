#!/bin/sh
# End to end: vbdfs --sim serving vbd-front guests attached with vbdctl.
# Verified I/O on raw, qcow2 and compressed qcow2 (the result compared
# with qemu-img); Debian's xenstore-ls reading the simulator's store;
# detach under load; a guest killed mid-I/O; SIGTERM with a guest
# connected.  Images vbdfs wrote must pass qemu-img check.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/xb-lib.sh"
need_cmd qemu-img qemu-utils
need_cmd xenstore-ls xenstore-utils
plan 29
SIM=$T/sim
XENSTORED_PATH=$SIM/xenstored
export XENSTORED_PATH

"$VBDFS" --sim "$SIM" -f -v >"$T/vbdfs.log" 2>&1 &
VPID=$!
at_exit "kill $VPID 2>/dev/null; wait $VPID 2>/dev/null"
ok "vbdfs --sim starts" wait_for 10 grep -q "ready" "$T/vbdfs.log"

# guest DOMID VDEV IMAGE FORMAT [vbd-front options]: vbd-front --wait as
# domain DOMID in the background ($GPID, output $T/g.out), then attach.
guest() {
    g_dom=$1 g_vdev=$2 g_img=$3 g_fmt=$4
    shift 4
    "$VBD_FRONT" --sim "$SIM" --domid "$g_dom" --wait "$@" "$g_vdev" >"$T/g.out" 2>&1 &
    GPID=$!
    at_exit "kill -9 $GPID 2>/dev/null"
    wait_for 10 xenstore-read "/local/domain/$g_dom/name"
    "$VBDCTL" --sim "$SIM" attach "$g_dom" "$g_vdev" "$g_img" --format "$g_fmt" --wait 5 >"$T/attach.out" 2>&1 ||
        diag "attach failed: $(cat "$T/attach.out")"
}
# A deterministic workload (one queue, one I/O in flight): the same seed
# gives the same writes on any image.
DET="--verify --rw mix --ios 400 --qd 1 --queues 1 --seed 7"

# raw
truncate -s 32M "$T/r.raw"
guest 5 xvda "$T/r.raw" raw --verify --rw mix --ios 2000
ok "raw: verified mixed I/O" wait $GPID
like "$(cat "$T/g.out")" "mismatches=0" "raw: no mismatch"
ok "raw: detach" "$VBDCTL" --sim "$SIM" detach 5 xvda

# qcow2 made by qemu-img
qemu-img create -q -f qcow2 "$T/q.qcow2" 32M
guest 5 xvda "$T/q.qcow2" qcow2 --verify --rw mix --ios 2000 --queues 2 --ring-order 2
ok "qcow2: verified mixed I/O on two queues, 4-page rings" wait $GPID
"$VBDCTL" --sim "$SIM" detach 5 xvda
ok "qcow2: qemu-img check clean" qemu-img check -q "$T/q.qcow2"

# compressed qcow2: the same deterministic workload on a raw copy and on a
# compressed image of the same data gives identical disks
head -c 18M /dev/urandom | base64 -w 100 | head -c 24M >"$T/base.raw"
qemu-img convert -c -O qcow2 "$T/base.raw" "$T/c.qcow2"
like "$(qemu-img check "$T/c.qcow2")" "100.00% compressed" "image is fully compressed"
cp "$T/base.raw" "$T/copy.raw"
guest 6 xvdb "$T/copy.raw" raw $DET
ok "deterministic run on raw" wait $GPID
"$VBDCTL" --sim "$SIM" detach 6 xvdb
guest 6 xvdb "$T/c.qcow2" qcow2 $DET
ok "deterministic run on compressed qcow2" wait $GPID
"$VBDCTL" --sim "$SIM" detach 6 xvdb
# (vbdctl detach returns once vbdfs let go of the image: no -U needed)
ok "qemu-img compare: compressed qcow2 == raw after the same writes" \
    qemu-img compare -q "$T/copy.raw" "$T/c.qcow2"
ok "compressed qcow2: qemu-img check clean" qemu-img check -q "$T/c.qcow2"
like "$(qemu-img check "$T/c.qcow2")" "[1-9][0-9.]*% compressed" "untouched clusters still compressed"

# Detach under load, while Debian's xenstore-ls reads the store.
qemu-img create -q -f qcow2 "$T/l.qcow2" 64M
guest 7 xvda "$T/l.qcow2" qcow2 --rw write --pattern rand --duration 20s
BE=/local/domain/0/backend/vbdfs/7/51712
ok "loaded guest connected" wait_xs 10 $BE/state 4
xenstore-ls -p /local/domain/0/backend/vbdfs >"$T/ls.out" 2>&1
like "$(cat "$T/ls.out")" 'sectors = "131072"' "xenstore-ls: sectors"
like "$(cat "$T/ls.out")" 'state = "4" .*\(n0,r7\)' "xenstore-ls: state with the guest's read permission"
sleep 0.5
ok "detach under load" "$VBDCTL" --sim "$SIM" detach 7 xvda --timeout 10
is "$(grep -c warning "$T/last.out")" 0 "the guest let go within the timeout"
ok "backend released the disk" wait_for 5 grep -q "7/51712: released (detached)" "$T/vbdfs.log"
wait $GPID
ok "image written under load: qemu-img check clean" qemu-img check -q "$T/l.qcow2"

# A guest killed in the middle of its writes.
guest 8 xvda "$T/l.qcow2" qcow2 --rw write --pattern rand --duration 20s
BE=/local/domain/0/backend/vbdfs/8/51712
wait_xs 10 $BE/state 4
sleep 0.5
kill -9 $GPID
ok "guest death: backend Closed" wait_xs 10 $BE/state 6
ok "guest death: disk released" wait_for 5 grep -q "8/51712: released (frontend gone)" "$T/vbdfs.log"
ok "after guest death: qemu-img check clean" qemu-img check -q "$T/l.qcow2"
like "$("$VBDCTL" --sim "$SIM" list)" "8 +xvda .*Closed +absent" "vbdctl list: Closed, frontend absent"
ok "detach of the dead guest's disk" "$VBDCTL" --sim "$SIM" detach 8 xvda --timeout 2
ok "vbdfs still running" kill -0 $VPID

# SIGTERM with a guest connected and writing.
guest 9 xvda "$T/l.qcow2" qcow2 --rw write --duration 20s
wait_xs 10 /local/domain/0/backend/vbdfs/9/51712/state 4
sleep 0.3
kill -TERM $VPID
wait $VPID
is "$?" 0 "vbdfs exits 0 on SIGTERM"
like "$(cat "$T/vbdfs.log")" "9/51712: released \(vbdfs stopping\)" "the connected disk was released"
like "$(cat "$T/vbdfs.log")" "backend state Connected -> Closing" "backend went Closing"
kill -9 $GPID 2>/dev/null
ok "after SIGTERM: qemu-img check clean" qemu-img check -q "$T/l.qcow2"
done_testing
