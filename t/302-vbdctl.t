#!/bin/sh
# vbdctl against the simulator's xenstored: the nodes and permissions it
# writes (as libxl does), its errors and exit codes, list --json; and how
# the backend treats configurations it must refuse.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim-lib.sh"
. "$(dirname "$0")/xb-lib.sh"
need_cmd xenstore-ls xenstore-utils
need_cmd jq jq
need_cmd qemu-img qemu-utils
plan 41
sim_start
domain_up 3 app3
truncate -s 8M "$T/a.img"

# Argument errors come before any xenstore access.
"$VBDCTL" --sim "$SIM" attach 3 xvda "$T/none.img" --format raw 2>"$T/err"
is "$?" 3 "missing image: exit 3"
like "$(cat "$T/err")" "none.img: No such file" "missing image named"
"$VBDCTL" --sim "$SIM" attach 3 xvda1 "$T/a.img" --format raw 2>"$T/err"
is "$?" 2 "partition as vdev: exit 2"
"$VBDCTL" --sim "$SIM" attach 3 xvda "$T/a.img" 2>"$T/err"
is "$?" 2 "writable disk without --format: exit 2"
like "$(cat "$T/err")" "never guessed" "explains why the format is needed"
"$VBDCTL" --sim "$SIM" attach 3 xvda "$T/a.img" --format vhd 2>/dev/null
is "$?" 2 "unknown format: exit 2"
"$VBDCTL" --sim "$SIM" attach 0 xvda "$T/a.img" --format raw 2>/dev/null
is "$?" 2 "domain 0 refused"
"$VBDCTL" --sim "$SIM" attach 9 xvda "$T/a.img" --format raw 2>"$T/err"
is "$?" 3 "unknown domain: exit 3"
like "$(cat "$T/err")" "domain 9 does not exist" "unknown domain named"
"$VBDCTL" --sim "$T/nosim" list 2>"$T/err"
is "$?" 1 "no simulator: exit 1"
like "$(cat "$T/err")" "vbdfs --sim DIR" "hint to start the simulator"

# The nodes, as libxl writes them (no backend running yet: state 1).
ok "attach (relative image path)" sh -c "cd '$T' && '$VBDCTL' --sim '$SIM' attach 3 xvdb a.img --format raw"
BE=$(be_path 3 51728)
FE=$(fe_path 3 51728)
is "$(xenstore-read "$BE/params")" "$T/a.img" "params is the absolute image path"
is "$(xenstore-read "$BE/format")" raw "format key"
is "$(xenstore-read "$BE/mode")" w "mode w"
is "$(xenstore-read "$BE/frontend")" "$FE" "backend points at the frontend"
is "$(xenstore-read "$BE/frontend-id")" 3 "frontend-id"
is "$(xenstore-read "$BE/dev")" xvdb "dev name"
is "$(xenstore-read "$BE/state")" 1 "backend Initialising"
is "$(xenstore-read "$FE/backend")" "$BE" "frontend points at the backend"
is "$(xenstore-read "$FE/virtual-device")" 51728 "virtual-device is the devid"
is "$(xenstore-read "$FE/state")" 1 "frontend Initialising"
like "$(xenstore-ls -p "$(dirname "$BE")" | grep '^51728 ')" '\(n0,r3\)' "backend dir: owned by dom0, readable by the guest"
like "$(xenstore-ls -p "$(dirname "$FE")" | grep '^51728 ')" '\(n3,r0\)' "frontend dir: owned by the guest, readable by dom0"
"$VBDCTL" --sim "$SIM" attach 3 xvdb "$T/a.img" --format raw 2>"$T/err"
is "$?" 4 "same vdev again: busy, exit 4"
like "$(cat "$T/err")" "already attached" "busy explained"

"$VBDCTL" --sim "$SIM" list --json >"$T/list.json"
is "$(jq -r '.[0].vdev + " " + .[0].format + " " + .[0].mode + " " + .[0].backend_state_name' "$T/list.json")" \
    "xvdb raw w Initialising" "list --json"
is "$(jq length "$T/list.json")" 1 "one disk listed"

ok "detach with no backend running is immediate" "$VBDCTL" --sim "$SIM" detach 3 xvdb
fails "nodes gone" xenstore-exists "$BE"
"$VBDCTL" --sim "$SIM" detach 3 xvdb 2>/dev/null
is "$?" 3 "detach of a detached disk: exit 3"

# Now with a backend: configurations it must refuse, each alone.
xbback_start
xenstore-write "$BE/frontend" "$FE" "$BE/frontend-id" 3 "$BE/params" "$T/a.img" \
    "$BE/mode" w "$BE/state" 1 "$FE/state" 1
ok "writable disk without a format: refused" wait_xs 5 "$BE/state" 6
like "$(xenstore-read "$BE/error")" "never guessed" "error says the format is never guessed"
xenstore-rm "$BE"; xenstore-rm "$FE"
# the image vanishes between vbdctl attach and the backend opening it
xbback_stop
"$VBDCTL" --sim "$SIM" attach 3 xvdc "$T/a.img" --format raw
rm "$T/a.img"
xbback_start
ok "image missing when the backend opens it: refused" wait_xs 5 "$(be_path 3 51744)/state" 6
like "$(xenstore-read "$(be_path 3 51744)/error")" "cannot open image.*a.img" "error names the image"
truncate -s 8M "$T/b.img"
"$VBDCTL" --sim "$SIM" attach 3 xvde "$T/b.img" --format raw --wait 5
ok "a good disk next to refused ones works" xs_is "$(be_path 3 51776)/state" 2
# a dirty (lazy-refcount) qcow2 attached writable: refused, saying why
qemu-img create -q -f qcow2 "$T/dirty.qcow2" 8M
printf '\001' | dd of="$T/dirty.qcow2" bs=1 seek=79 conv=notrunc status=none
"$VBDCTL" --sim "$SIM" attach 3 xvdf "$T/dirty.qcow2" --format qcow2
ok "dirty qcow2, writable: refused" wait_xs 5 "$(be_path 3 51792)/state" 6
like "$(xenstore-read "$(be_path 3 51792)/error")" "dirty.*vbd-img check -r all.*mode r" \
    "error says the image is dirty and what to do"

# backend/vbd (xl disks with backendtype=phy): params without a format
# key is raw; FORMAT:PATH is understood.
domain_up 4 xl4
BETYPE=vbd
xbback_stop
xbback_start --backend-type vbd
BE=$(be_path 4 51712)
FE=$(fe_path 4 51712)
xenstore-write "$BE/frontend" "$FE" "$BE/frontend-id" 4 "$BE/online" 1 "$BE/type" phy \
    "$BE/params" "aio:$T/b.img" "$BE/mode" w "$BE/state" 1 "$FE/backend" "$BE" "$FE/state" 1
ok "backend/vbd disk reaches InitWait" wait_xs 5 "$BE/state" 2
front_connect "$FE"
ok "backend/vbd disk connects" wait_xs 5 "$BE/state" 4
is "$(xenstore-read "$BE/sectors")" 16384 "its size"
BETYPE=vbdfs
done_testing
