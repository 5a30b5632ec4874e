#!/bin/sh
# vbdfs --backend-type vbd: disks laid out the way xl/libxl writes them for
# backendtype=phy,script=vbdfs-hotplug (backend/vbd, type phy, params is
# the xl target "FORMAT:PATH", no format key), then libxl's hotplug step
# (util/vbdfs-hotplug add) and a guest doing verified I/O; then libxl's
# teardown (online=0, state 5, wait for 6, remove).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/xb-lib.sh"
need_cmd qemu-img qemu-utils
need_cmd xenstore-write xenstore-utils
plan 10
SIM=$T/sim
XENSTORED_PATH=$SIM/xenstored
export XENSTORED_PATH
BETYPE=vbd
"$VBDFS" --sim "$SIM" -f --backend-type vbd >"$T/vbdfs.log" 2>&1 &
VPID=$!
at_exit "kill $VPID 2>/dev/null; wait $VPID 2>/dev/null"
wait_for 10 grep -q ready "$T/vbdfs.log" || bail_out "vbdfs did not start"

qemu-img create -q -f qcow2 "$T/x.qcow2" 16M
BE=$(be_path 4 51712)
FE=$(fe_path 4 51712)
"$VBD_FRONT" --sim "$SIM" --domid 4 --wait --verify --duration 2s xvda >"$T/g.out" 2>&1 &
GPID=$!
at_exit "kill -9 $GPID 2>/dev/null"
wait_for 10 xenstore-read /local/domain/4/name
# libxl__device_generic_add: both directories in one transaction
"$XSDOMAIN" xl-disk vbd 4 51712 xvda "qcow2:$T/x.qcow2"
be_taken() { xs_is "$BE/state" 2 || xs_is "$BE/state" 4; }
ok "vbdfs takes the xl disk: InitWait or later (libxl waits for it)" wait_for 10 be_taken
ok "hotplug script add" env XENBUS_PATH="$BE" "$VBDFS_SRC/util/vbdfs-hotplug" add
is "$(xenstore-read "$BE/hotplug-status")" connected "hotplug-status connected"
ok "guest verified I/O on the qcow2 named by FORMAT:PATH" wait $GPID
like "$(cat "$T/vbdfs.log")" "serving $T/x.qcow2 \(qcow2" "opened as qcow2"

# A second guest, torn down the way libxl does it.
"$VBD_FRONT" --sim "$SIM" --domid 4 --wait --rw write --duration 20s xvda >"$T/g2.out" 2>&1 &
GPID=$!
at_exit "kill -9 $GPID 2>/dev/null"
wait_for 10 xenstore-read /local/domain/4/name
"$XSDOMAIN" xl-disk vbd 4 51712 xvda "qcow2:$T/x.qcow2"
ok "connected again" wait_xs 10 "$BE/state" 4
sleep 0.3
xenstore-write "$BE/online" 0 "$BE/state" 5
ok "libxl teardown: the backend reaches Closed" wait_xs 10 "$BE/state" 6
ok "the disk is released" wait_for 5 grep -q "4/51712: released (detached)" "$T/vbdfs.log"
ok "hotplug script remove" env XENBUS_PATH="$BE" "$VBDFS_SRC/util/vbdfs-hotplug" remove
xenstore-rm "$FE" 2>/dev/null; xenstore-rm "$BE"
ok "qemu-img check clean" qemu-img check -q "$T/x.qcow2"
done_testing
