#!/bin/sh
# vbd-front's frontend half of the XenBus handshake against the real
# backend state machine (blkback/xenbus.c in t/helpers/xbback, whose fake
# engine logs what the backend negotiated), on the simulator: defaults are
# Linux 6.1 blkfront's, options are capped by the backend's limits, the
# close sequence and reconnects work, and failures are reported, not hung.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim-lib.sh"
. "$(dirname "$0")/xb-lib.sh"
. "$(dirname "$0")/front-lib.sh"
need_cmd jq jq
need_cmd xenstore-read xenstore-utils
plan 25
sim_start
xbback_start --max-queues 4 --max-ring-order 3
truncate -s 64M "$T/a.img"
truncate -s 16M "$T/b.img"
ncpu=$(nproc); [ "$ncpu" -gt 4 ] && ncpu=4
last_start() { grep '^start' "$T/xbback.out" | tail -n 1; }

# No device: a clear message and exit 1, without --wait.
fails "no device: exit 1" "$VBD_FRONT" --sim "$SIM" --domid 7 --list
like "$(cat "$T/last.out")" "domain 7 has no devices" "message says there is no device"

# Linux 6.1 defaults.
ok "--list with defaults" front_run 7 "xvda:$T/a.img" --list
like "$(cat "$T/f.out")" "^51712 xvda sectors=131072 sector-size=512 " "listed with its size"
like "$(last_start)" "^start 7/51712 abi=x86_64-abi order=0 queues=$ncpu q0=[0-9]+:[0-9]+ .*persistent=1" \
    "one page, min(4, CPUs) queues, x86_64, persistent grants"
like "$(grep -E '^(start|stop)' "$T/xbback.out" | tail -n 1)" "^stop 7/51712" \
    "closed: backend stopped the engine"

# Two disks, JSON.
ok "two disks, --json" front_run 8 "xvda:$T/a.img xvdb:$T/b.img" --list --json
is "$(jq '.devices | length' "$T/f.out")" 2 "--json lists two devices"
is "$(jq -r '.devices[1].vdev' "$T/f.out")" xvdb "second is xvdb"
is "$(jq '.devices[1].sectors' "$T/f.out")" 32768 "xvdb: 16 MiB"
is "$(jq '.devices[0].indirect_segments' "$T/f.out")" 32 "32 indirect segments (Linux default)"
is "$(jq '.devices[0].backend_max_ring_page_order' "$T/f.out")" 3 "backend limit read"

# Options, capped by the backend: order 4 -> 3, 9 queues -> 4.
ok "every option" front_run 9 "xvdb:$T/b.img" --list --ring-order 4 --queues 9 \
    --abi x86_32 --persistent off --indirect 0
like "$(cat "$T/f.out")" "^51728 xvdb .*protocol=x86_32-abi ring-page-order=3 queues=4 persistent=0 indirect=0" \
    "negotiated: x86_32, order 3 (capped), 4 queues (capped), no persistent, no indirect"
like "$(last_start)" \
    "^start 9/51728 abi=x86_32-abi order=3 queues=4 q0=([0-9]+,){7}[0-9]+:[0-9]+ q1=.* q3=.* persistent=0" \
    "backend mapped 4 queues of 8 ring pages each"
ok "a devid, one queue" front_run 10 "51712:$T/a.img" --list --queues 1
like "$(last_start)" "^start 10/51712 .*queues=1 q0=[0-9]+:[0-9]+ persistent" \
    "one queue: flat ring-ref/event-channel keys"

# Reconnect cycles: connect, close, connect again.
ok "--reconnect 2" front_run 11 "xvda:$T/a.img" --list --reconnect 2
is "$(grep -c '^start 11/51712' "$T/xbback.out")" 3 "three connections"
is "$(grep -c '^51712 xvda' "$T/f.out")" 3 "listed once per connection"

# Usage errors.
fails "ring order above 4 refused" "$VBD_FRONT" --sim "$SIM" --domid 7 --list --ring-order 5
fails "unknown --abi refused" "$VBD_FRONT" --sim "$SIM" --domid 7 --list --abi sparc
fails "a bad disk name refused" "$VBD_FRONT" --sim "$SIM" --domid 7 --list xvda1

# A backend that cannot connect: reported within the timeout, exit 1.
xbback_stop
FAKE_ENGINE_FAIL=1 xbback_start
front_start 12 "xvda:$T/a.img" --list --timeout 3s
fails "engine failure: exit 1" front_wait
like "$(cat "$T/f.err")" "did not connect" "says the backend did not connect"
done_testing
