#!/bin/sh
# vbd-front against the real backend (XenBus state machine + request
# engine on the simulator, t/helpers/simback): verified data over raw and
# qcow2 images, every operation, both ABIs, 1 and 4 queues, ring orders 0
# and 4, with and without indirect requests and persistent grants,
# unaligned buffers, split I/Os, reconnects, a restart of the guest, and a
# clean stop on SIGTERM.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim-lib.sh"
. "$(dirname "$0")/front-lib.sh"
need_cmd jq jq
need_cmd xenstore-read xenstore-utils
need_cmd qemu-img qemu-utils
plan 39
sim_start
simback_start --max-queues 4
truncate -s 32M "$T/raw.img"
qemu-img create -q -f qcow2 "$T/q.qcow2" 32M

V="--verify --json --timeout 20s"
MIX="--rw mix --pattern rand --ios 1500 --flush-every 16 --discard-every 11"
dom=20
# e2e NAME DISK ARGS...: one guest run, must exit 0 with a clean report
e2e() {
    _name=$1 _disk=$2; shift 2
    dom=$((dom + 1))
    front_run $dom "$_disk" $V "$@"
    _rc=$?
    if [ $_rc = 0 ] && [ "$(jf .ok)" = true ] && [ "$(jf '.devices[0].verify.mismatches')" = 0 ]; then
        _result 0 "$_name"
    else
        _result 1 "$_name"
        diag "exit $_rc: $(head -c 600 "$T/f.out") $(head -c 600 "$T/f.err")"
    fi
}

# Each operation, then a mixed verified workload on both formats.
e2e "raw: fill and verify" "xvda:$T/raw.img" --fill --bs 256k
is "$(jf '.devices[0].verify.sectors')" 65536 "every sector read back and checked"
e2e "raw: random mix with flushes and discards" "xvda:$T/raw.img" $MIX
ok "flushes completed" test "$(jf '.devices[0].ops.flush.ios')" -gt 0
ok "discards completed" test "$(jf '.devices[0].ops.discard.ios')" -gt 0
ok "reads and writes completed" test "$(jf '.devices[0].ops.read.ios')" -gt 0 -a \
    "$(jf '.devices[0].ops.write.ios')" -gt 0
is "$(jf '.devices[0].errors.error + .devices[0].errors.eopnotsupp')" 0 "no error responses"
ok "notifications both ways" test "$(jf '.devices[0].notifications.sent')" -gt 0 -a \
    "$(jf '.devices[0].notifications.received')" -gt 0
e2e "qcow2: fill and verify" "xvda:$T/q.qcow2:qcow2" --fill --bs 64k
e2e "qcow2: random mix with flushes and discards" "xvda:$T/q.qcow2:qcow2" $MIX --bs 16k
ok "qcow2 image consistent (qemu-img check)" qemu-img check -q "$T/q.qcow2"

# The negotiation matrix, each verified.
e2e "x86_32, 4 queues, ring order 4" "xvda:$T/raw.img" $MIX --abi x86_32 --queues 4 --ring-order 4
like "$(grep ": connected" "$T/simback.err" | tail -n 1)" "x86_32-abi, 4 queues, ring order 4" \
    "backend connected with x86_32, 4 queues, order 4"
e2e "x86_64, 1 queue, ring order 0" "xvda:$T/raw.img" $MIX --queues 1 --ring-order 0
e2e "no indirect, no persistent grants, 1M I/Os split" "xvda:$T/raw.img" \
    --rw write --bs 1M --indirect 0 --persistent off --size 8M --queues 2
is "$(jf '.devices[0].requests')" $((2 * 8 * 24 + 2)) \
    "1M I/Os split into 11-segment requests (24 each, writes and read-back; a flush per queue)"
is "$(grep ": connected" "$T/simback.err" | tail -n 1 | grep -c persistent)" 0 \
    "backend connected without persistent grants"
e2e "256 indirect segments, 1M I/Os" "xvda:$T/raw.img" --rw write --bs 1M --indirect 256 --size 8M \
    --queues 2
is "$(jf '.devices[0].requests')" 18 "one request per 1M I/O (and a flush per queue)"
e2e "32 indirect segments (default), unaligned buffers" "xvda:$T/raw.img" $MIX --bs 60k --unaligned
e2e "x86_32, persistent off, indirect, unaligned, qcow2" "xvda:$T/q.qcow2:qcow2" $MIX \
    --abi x86_32 --persistent off --bs 192k --unaligned --queues 4

# Reconnect cycles: data written in one connection is checked in the next.
e2e "three connections, verified across them" "xvda:$T/raw.img" --rw write --pattern rand \
    --ios 300 --reconnect 2 --size 4M
ok "verified more than one pass" test "$(jf '.devices[0].verify.sectors')" -ge $((3 * 8192))
is "$(grep -c "vbdfs/$dom/51712: connected" "$T/simback.err")" 3 "backend saw three connections"

# A guest restart: a new process checks what the previous one filled.
e2e "fill (guest 1)" "xvda:$T/raw.img" --fill --seed 77
e2e "check after a guest restart (guest 2, --filled)" "xvda:$T/raw.img" --filled --seed 77 --rw read
is "$(jf '.devices[0].verify.sectors')" $((2 * 65536)) "workload and read-back both checked"
dom=$((dom + 1))
front_run $dom "xvda:$T/raw.img" --filled --seed 78 --rw read --ios 10 --json >/dev/null
is "$(jf .ok)" false "a wrong seed is caught as mismatches"

# Two disks at once, then SIGTERM in the middle of a long run.
truncate -s 16M "$T/b.img"
dom=$((dom + 1))
front_start $dom "xvda:$T/raw.img xvdb:$T/b.img" $V $MIX --ios 0 --duration 60s
wait_for 10 grep -q "vbdfs/$dom/51728: connected" "$T/simback.err"
sleep 0.5
kill -TERM "$FRONT_PID"
ok "SIGTERM: drains, closes and exits 0" front_wait
is "$(jf '.devices | length')" 2 "both disks reported"
ok "both disks did I/O" test "$(jf '.devices[1].ops.read.ios')" -gt 0
ok "backend disconnected both" wait_for 5 test "$(grep -c "vbdfs/$dom/.*: disconnected" "$T/simback.err")" = 2
ok "backend still running" simback_alive

# The toolstack resizes the disk, then detaches it, under I/O.
dom=$((dom + 1))
front_start $dom "xvda:$T/raw.img" $V $MIX --ios 0 --duration 60s
wait_for 10 grep -q "vbdfs/$dom/51712: connected" "$T/simback.err"
ok "online resize under I/O" "$VBDCTL" --sim "$SIM" resize $dom xvda 48M
sleep 0.3
ok "detach under I/O" "$VBDCTL" --sim "$SIM" detach $dom xvda --timeout 10
fails "the guest reports the interrupted workload (exit 1)" front_wait
is "$(jf '.devices[0].problem')" "backend left Connected during the workload phase" \
    "outstanding requests collected, the reason given"
is "$(jf '.devices[0].verify.mismatches + .devices[0].errors.error + .devices[0].errors.bad_responses')" 0 \
    "no mismatches, errors or bad responses until then"
fails "the guest did not re-create its removed device directory" \
    xenstore-read "/local/domain/$dom/device/vbd/51712/state"
done_testing
