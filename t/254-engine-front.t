#!/bin/sh
# The request engine behind the real XenBus backend (t/helpers/engback), on
# the simulator, driven by vbd-front as a Linux-like guest: verified random
# mixes with flushes and discards on both ABIs, rings of order 0 and 4, 1
# and 4 queues, persistent grants on and off, 1 MiB indirect I/O; then
# vbd-front's hostile modes and a guest killed mid-I/O, after which the
# backend still serves.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim-lib.sh"
need_cmd xenstore-read xenstore-utils
[ -x "$VBD_FRONT" ] || skip_all "vbd-front not built"
plan 27
sim_start
. "$(dirname "$0")/engback-lib.sh"
engback_start --max-queues 4
truncate -s 64M "$T/a.img"

MIX="--verify --rw mix --pattern rand --ios 1500 --bs 16k --indirect 32 --flush-every 100 --discard-every 50"
for abi in x86_64 x86_32; do
    for order in 0 4; do
        for q in 1 4; do
            for p in on off; do
                ok "verified mix: $abi, ring order $order, $q queue(s), persistent $p" \
                    guest $MIX --abi $abi --ring-order $order --queues $q --persistent $p
            done
        done
    done
done
ok "verified 1 MiB sequential I/O through 256-segment indirect requests" \
    guest --verify --rw mix --pattern seq --bs 1M --indirect 256 --ios 100 --queues 2

# With persistent grants the backend keeps grants mapped.  These first two
# runs date from when the simulator let a guest end a mapped grant (and
# bad-grant then re-used a gref the backend still mapped); kept as they were.
ok "hostile requests all answered as expected (--evil all, no persistent)" \
    guest --evil all --persistent off
ok "bad grants refused with persistent grants (fresh domain)" guest --evil bad-grant
# The simulator refuses to end a grant the backend maps (-EBUSY, as Xen),
# and vbd-front ends its held grants only after the backend closed (a grant
# it cannot end fails the run): --evil all with persistent grants on.
ok "hostile requests all answered as expected (--evil all, persistent on)" \
    guest --evil all --persistent on
ok "ring overrun: backend stops serving that ring, guest closes cleanly" guest --evil ring-overrun
fails "guest killed with requests in flight" guest --evil die --queues 2
sleep 1
ok "backend still alive" kill -0 "$EB_PID"
ok "and still serves a new guest, data intact" guest --verify --rw mix --ios 500
grep -q "frontend provided bogus ring requests" "$T/eb.err"
ok "the bogus ring was logged" test $? = 0
kill -TERM "$EB_PID"
wait "$EB_PID"
is "$?" 0 "backend stops cleanly on SIGTERM (every engine stopped; under make asan: no leaks)"
ok "no sanitizer report from the backend" sh -c "! grep -q Sanitizer '$T/eb.err'"
