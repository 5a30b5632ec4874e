#!/bin/sh
# Online resize through vbdctl; many devices and guests at once; a
# frontend flooding its state node (coalesced watch events, XSA-349)
# while its neighbours keep working.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim-lib.sh"
. "$(dirname "$0")/xb-lib.sh"
need_cmd xenstore-watch xenstore-utils
plan 21
sim_start
xbback_start
domain_up 5 web5
truncate -s 8M "$T/r.img"
BE=$(be_path 5 51712)
FE=$(fe_path 5 51712)
"$VBDCTL" attach 5 xvda "$T/r.img" --format raw --wait 5
front_connect "$FE"
wait_xs 5 "$BE/state" 4

# The frontend watches the backend state: the resize must fire it.
xenstore-watch -n 2 "$BE/state" >"$T/watch.out" 2>&1 &
WPID=$!
at_exit "kill $WPID 2>/dev/null"
wait_for 5 test -s "$T/watch.out"
ok "resize to 16M" "$VBDCTL" resize 5 xvda 16M --timeout 5
is "$(xenstore-read "$BE/sectors")" 32768 "sectors rewritten"
is "$(stat -c %s "$T/r.img")" 16777216 "image file grown"
ok "engine told the new size" grep -q "^sectors 5/51712 32768" "$T/xbback.out"
is "$(xenstore-read "$BE/state")" 4 "still Connected"
ok "state rewritten: the frontend's watch fired" wait_for 5 test "$(wc -l <"$T/watch.out")" -ge 2
fails "request key removed" xenstore-exists "$BE/resize"

"$VBDCTL" resize 5 xvda 4M 2>"$T/err"
is "$?" 1 "shrinking refused"
like "$(cat "$T/err")" "only grow" "says disks only grow"
"$VBDCTL" resize 5 xvda 1000 2>/dev/null
is "$?" 2 "size not a multiple of 512: usage error"
"$VBDCTL" resize 5 xvdz 32M 2>/dev/null
is "$?" 3 "resize of a disk that is not attached: exit 3"
"$VBDCTL" attach 5 xvdb "$T/r.img" --format raw --readonly --wait 5
"$VBDCTL" resize 5 xvdb 32M 2>"$T/err"
is "$?" 1 "read-only disk cannot grow"
"$VBDCTL" detach 5 xvdb

# Many guests and disks at once (attached concurrently).
truncate -s 1M "$T/m.img"
for d in 11 12 13 14; do domain_up $d g$d; done
pids=""
for d in 11 12 13 14; do
    for v in xvda xvdb xvdc xvdd xvde; do
        "$VBDCTL" attach $d $v "$T/m.img" --format raw --readonly & pids="$pids $!"
    done
done
fails_n=0
for p in $pids; do wait "$p" || fails_n=$((fails_n + 1)); done
is "$fails_n" 0 "20 concurrent attaches"
all_in() { # all_in STATE : every device of domains 11-14 is in STATE
    for d in 11 12 13 14; do for dev in 51712 51728 51744 51760 51776; do
        xs_is "$(be_path $d $dev)/state" "$1" || return 1; done; done
}
all_in_but_first() { # every device but 11/51712
    for d in 11 12 13 14; do for dev in 51712 51728 51744 51760 51776; do
        [ "$d/$dev" = 11/51712 ] || xs_is "$(be_path $d $dev)/state" "$1" || return 1; done; done
}
ok "all 20 reach InitWait" wait_for 10 all_in 2
for d in 11 12 13 14; do for dev in 51712 51728 51744 51760 51776; do
    front_connect "$(fe_path $d $dev)"; done; done
ok "all 20 connect" wait_for 10 all_in 4
is "$(engine_count '^start 1[1-4]/')" 20 "20 engines started"

# One frontend floods its state node; the others are unaffected.
F=$(fe_path 11 51712)
i=0
while [ $i -lt 150 ]; do xenstore-write "$F/state" 1; xenstore-write "$F/state" 3; i=$((i + 1)); done
ok "its neighbours still Connected" all_in_but_first 4
# (the backend may still be working through the flood's last events)
ok "the flooding frontend ends Connected" wait_for 10 all_in 4
ok "backend alive and responsive" "$VBDCTL" detach 12 xvdb --timeout 0
ok "the rest stays connected" xs_is "$(be_path 12 51712)/state" 4
is "$(engine_count '^stop 1[3-4]/')" 0 "no other guest's engine was touched"
done_testing
