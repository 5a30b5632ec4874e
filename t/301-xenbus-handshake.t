#!/bin/sh
# The XenBus handshake of blkback/xenbus.c against the simulator's
# xenstored, with vbdctl writing the nodes and this script playing the
# frontend (as Linux blkfront does it) and a fake request engine that logs
# what was negotiated.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim-lib.sh"
. "$(dirname "$0")/xb-lib.sh"
need_cmd xenstore-write xenstore-utils
need_cmd jq jq
plan 48
sim_start
xbback_start --max-queues 4
domain_up 5 web5
truncate -s 64M "$T/disk.img"

BE=$(be_path 5 51712)
FE=$(fe_path 5 51712)
ok "vbdctl attach" "$VBDCTL" attach 5 xvda "$T/disk.img" --format raw --wait 5
ok "backend reaches InitWait" wait_xs 5 "$BE/state" 2
# rule 24: limits and features are there before InitWait
is "$(xenstore-read "$BE/max-ring-page-order")" 4 "max-ring-page-order 4"
is "$(xenstore-read "$BE/multi-queue-max-queues")" 4 "multi-queue-max-queues as configured"
is "$(xenstore-read "$BE/feature-max-indirect-segments")" 256 "feature-max-indirect-segments"
is "$(xenstore-read "$BE/feature-persistent")" 1 "feature-persistent offered"
is "$(xenstore-read "$BE/feature-flush-cache")" 1 "feature-flush-cache"
is "$(xenstore-read "$BE/feature-discard")" 1 "feature-discard on a writable raw image"
is "$(xenstore-read "$BE/discard-granularity")" 512 "discard-granularity: any sector-aligned discard is accepted"
is "$(xenstore-read "$FE/state")" 1 "frontend still Initialising"

# The frontend connects; the backend publishes the disk and goes Connected.
front_connect "$FE"
ok "backend Connected" wait_xs 5 "$BE/state" 4
is "$(xenstore-read "$BE/sectors")" 131072 "sectors in 512-byte units"
is "$(xenstore-read "$BE/info")" 0 "info 0 for a writable disk"
is "$(xenstore-read "$BE/sector-size")" 512 "sector-size"
is "$(xenstore-read "$BE/physical-sector-size")" 4096 "physical-sector-size"
like "$(cat "$T/xbback.out")" "start 5/51712 abi=x86_64-abi order=0 queues=1 q0=8:5 persistent=1 ro=0" \
    "engine started with the frontend's ring, channel, ABI and persistent grants"

# The device's info (what /vbd/<dev>/info shows), as JSON and text.
kill -USR1 "$XBBACK_PID"
wait_for 5 grep -q "^end info" "$T/xbback.out"
sed -n '/^info 1$/,/^end info$/p' "$T/xbback.out" | grep '^{' >"$T/info.json"
is "$(jq -r '.vdev + " " + .backend_state + " " + .frontend_state + " " + .format + " " + .mode' "$T/info.json")" \
    "xvda Connected Initialised raw w" "info JSON: vdev, states, format, mode"
is "$(jq -r '.engine.fake' "$T/info.json")" true "info JSON embeds the engine's object"
like "$(cat "$T/xbback.out")" "backend-state: 4 \(Connected\)" "info text: backend state"

# Frontend closes: Closing -> Closing, Closed -> engine stopped, Closed.
xenstore-write "$FE/state" 5
ok "backend follows to Closing" wait_xs 5 "$BE/state" 5
is "$(engine_count '^stop')" 0 "engine still running while Closing"
xenstore-write "$FE/state" 6
ok "backend Closed after the frontend closed" wait_xs 5 "$BE/state" 6
ok "engine stopped" wait_for 5 test "$(engine_count '^stop 5/51712')" = 1

# Reconnect: the frontend starts over, with two queues and 2-page rings.
xenstore-write "$FE/state" 1
ok "back to InitWait on Initialising" wait_xs 5 "$BE/state" 2
xenstore-rm "$FE/ring-ref"; xenstore-rm "$FE/event-channel"
xenstore-write "$FE/multi-queue-num-queues" 2 "$FE/ring-page-order" 1 \
    "$FE/queue-0/ring-ref0" 10 "$FE/queue-0/ring-ref1" 11 "$FE/queue-0/event-channel" 12 \
    "$FE/queue-1/ring-ref0" 20 "$FE/queue-1/ring-ref1" 21 "$FE/queue-1/event-channel" 22 \
    "$FE/feature-persistent" 0 "$FE/state" 3
ok "reconnected" wait_xs 5 "$BE/state" 4
like "$(tail -n 1 "$T/xbback.out")" "order=1 queues=2 q0=10,11:12 q1=20,21:22 persistent=0" \
    "second connection: two queues, two-page rings, no persistent grants"

# A bad frontend: unknown protocol.  That device goes Closing with an error.
xenstore-write "$FE/state" 6
wait_xs 5 "$BE/state" 6
xenstore-write "$FE/state" 1
wait_xs 5 "$BE/state" 2
xenstore-write "$FE/protocol" sparc-abi "$FE/state" 3
ok "unknown protocol: backend Closing" wait_xs 5 "$BE/state" 5
like "$(xenstore-read "$BE/error")" "protocol 'sparc-abi' is not supported" "error key says why"
like "$("$VBDCTL" list)" "error: frontend protocol" "vbdctl list shows the error"
is "$(engine_count '^start')" 2 "no engine started for the bad frontend"
xenstore-write "$FE/state" 6
ok "Closed after the failed frontend closes" wait_xs 5 "$BE/state" 6
xenstore-write "$FE/protocol" x86_64-abi "$FE/multi-queue-num-queues" 9 "$FE/state" 1
wait_xs 5 "$BE/state" 2
xenstore-write "$FE/state" 3
ok "too many queues refused" wait_xs 5 "$BE/state" 5
like "$(xenstore-read "$BE/error")" "9 queues" "error names the queue count"
xenstore-write "$FE/state" 6
wait_xs 5 "$BE/state" 6
xenstore-write "$FE/multi-queue-num-queues" 1 "$FE/ring-ref" 8 "$FE/event-channel" 5 \
    "$FE/ring-page-order" 0 "$FE/state" 1
wait_xs 5 "$BE/state" 2
xenstore-write "$FE/state" 3
ok "a fixed frontend connects again" wait_xs 5 "$BE/state" 4
fails "error key removed on success" xenstore-read "$BE/error"

# Detach while connected: Closing and online=0 (as libxl), the frontend
# answers Closed, the backend closes, vbdctl removes both directories.
"$VBDCTL" detach 5 xvda --timeout 10 >"$T/detach.out" 2>&1 &
DPID=$!
ok "detach asks the frontend to close" wait_xs 5 "$BE/state" 5
is "$(xenstore-read "$BE/online")" 0 "online=0"
xenstore-write "$FE/state" 6
wait $DPID
is "$?" 0 "vbdctl detach succeeded"
fails "backend dir removed" xenstore-exists "$BE"
fails "frontend dir removed" xenstore-exists "$FE"
ok "engine stopped on detach" wait_for 5 test "$(engine_count '^stop')" = 3
ok "device forgotten" wait_for 5 grep -q "released (detached)" "$T/xbback.err"

# Guest death while connected.
"$VBDCTL" attach 5 xvdb "$T/disk.img" --format raw --readonly --wait 5
BE2=$(be_path 5 51728)
FE2=$(fe_path 5 51728)
is "$(xenstore-read "$BE2/feature-discard")" 0 "no discard on a read-only disk"
front_connect "$FE2"
wait_xs 5 "$BE2/state" 4
is "$(xenstore-read "$BE2/info")" 4 "info VDISK_READONLY"
domain_down 5
ok "guest death: backend Closed" wait_xs 5 "$BE2/state" 6
ok "guest death: engine stopped" wait_for 5 grep -q "^stop 5/51728" "$T/xbback.out"

# SIGTERM: a clean stop of every device.
domain_up 7 db7
"$VBDCTL" attach 7 xvda "$T/disk.img" --format raw --readonly --wait 5
front_connect "$(fe_path 7 51712)"
wait_xs 5 "$(be_path 7 51712)/state" 4
ok "SIGTERM: clean exit" xbback_stop
is "$(xenstore-read "$(be_path 7 51712)/state")" 6 "SIGTERM leaves the backend Closed"
done_testing
