#!/bin/sh
# One vbdfs serving several simulated guests with several disks each, all
# doing verified I/O at once; one guest killed mid-run disturbs nobody
# else.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/xb-lib.sh"
need_cmd qemu-img qemu-utils
plan 10
vbdfs_sim || bail_out "vbdfs did not start"

# Guests 21-23 run long enough for all to overlap; 24 gets killed.
for d in 21 22 23 24; do
    truncate -s 16M "$T/r$d.raw"
    qemu-img create -q -f qcow2 "$T/q$d.qcow2" 16M
    ios=4000; [ $d = 24 ] && ios=1000000
    "$VBD_FRONT" --sim "$SIM" --domid $d --wait --verify --rw mix --ios $ios --queues 2 \
        xvda xvdb >"$T/g$d.out" 2>&1 &
    eval "G$d=\$!"
    at_exit "kill -9 \$G$d 2>/dev/null"
done
for d in 21 22 23 24; do
    wait_for 10 xenstore-read /local/domain/$d/name
    "$VBDCTL" --sim "$SIM" attach $d xvda "$T/r$d.raw" --format raw
    "$VBDCTL" --sim "$SIM" attach $d xvdb "$T/q$d.qcow2" --format qcow2
done
ok "guest 24 connected" wait_xs 10 "$(be_path 24 51728)/state" 4
kill -9 $G24
ok "guest 24 killed: its disks released" wait_for 10 sh -c \
    "[ \$(grep -c '24/517[0-9]*: released (frontend gone)' '$T/vbdfs.log') = 2 ]"
for d in 21 22 23; do
    eval "p=\$G$d"
    ok "guest $d: verified I/O on two disks" wait $p
    is "$(grep -c 'mismatches=0' "$T/g$d.out")" 2 "guest $d: no mismatch on either disk"
done
for d in 21 22 23 24; do qemu-img check -q "$T/q$d.qcow2" || echo "q$d" >>"$T/bad"; done
fails "every qcow2 image passes qemu-img check" test -s "$T/bad"
ok "vbdfs still running" kill -0 $VPID
done_testing
