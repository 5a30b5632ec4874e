#!/bin/sh
# Hardening: every --evil mode of vbd-front against the real backend
# (t/helpers/simback) is answered as required -- BLKIF_RSP_ERROR or
# EOPNOTSUPP, never a hang, the device still serving afterwards; a ring
# overrun stops that ring without the backend spinning; a guest killed
# with requests in flight is cleaned up -- while a well-behaved guest on
# another disk keeps running verified I/O the whole time.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim-lib.sh"
. "$(dirname "$0")/front-lib.sh"
need_cmd jq jq
need_cmd xenstore-read xenstore-utils
plan 24
sim_start
simback_start --max-queues 2
truncate -s 32M "$T/good.img"
truncate -s 16M "$T/evil.img"

# The good guest: domain 50, verified random I/O until told to stop.
"$VBD_FRONT" --sim "$SIM" --domid 50 --wait --verify --json --rw mix --pattern rand \
    --duration 120s --flush-every 20 --discard-every 15 xvda >"$T/good.out" 2>"$T/good.err" &
GOOD=$!
at_exit "kill -9 $GOOD 2>/dev/null"
wait_for 10 xenstore-read /local/domain/50/name
ok "good guest's disk attached" "$VBDCTL" --sim "$SIM" attach 50 xvda "$T/good.img" --format raw
wait_for 10 grep -q "vbdfs/50/51712: connected" "$T/simback.err"

dom=60
evil() {
    _mode=$1; shift
    dom=$((dom + 1))
    front_run $dom "xvdb:$T/evil.img" --evil "$_mode" --timeout 5s "$@"
}
for m in sector-range bad-grant bad-segs bad-op; do
    evil $m
    _rc=$?
    if [ $_rc = 0 ] && ! grep -q '^FAIL' "$T/f.out" && grep -q "0 failed" "$T/f.out"; then
        _result 0 "evil $m: every bad request refused, device still serving"
    else
        _result 1 "evil $m: every bad request refused, device still serving"
        diag "exit $_rc: $(grep -v '^PASS' "$T/f.out" "$T/f.err" | head -n 10)"
    fi
    ok "evil $m: checked something" test "$(grep -c '^PASS' "$T/f.out")" -ge 5
done

ok "bad-op with --json" evil bad-op --json
is "$(jq -s '[.[] | select(.check) | select(.pass | not)] | length' "$T/f.out"):$(jq -s 'map(select(.evil)) | .[0].failed' "$T/f.out")" \
    "0:0" "--json: one object per check, none failed, a summary object"
ok "storm: device serves after 1 s of notifications" evil storm --duration 1s
like "$(grep 'notifications without requests' "$T/f.out")" "[0-9]+ sent" "storm sent notifications"

# Ring overrun: the backend stops serving that ring and does not spin.
ok "ring-overrun: backend stopped serving the ring" evil ring-overrun
like "$(cat "$T/f.out")" "PASS ring-overrun" "reported as passed"
# A guest that dies with requests in flight.
dom=$((dom + 1))
front_run $dom "xvdb:$T/evil.img" --evil die
is "$?" 137 "die: the guest killed itself"
ok "backend released the dead guest's disk" \
    wait_for 10 grep -q "vbdfs/$dom/51728: released" "$T/simback.err"
dom=$((dom + 1))
ok "a new guest gets the same disk and verified I/O works" \
    front_run $dom "xvdb:$T/evil.img" --fill --bs 1M

# The good guest never noticed.
ok "backend still running" simback_alive
kill -TERM "$GOOD"
ok "good guest exits 0" wait "$GOOD"
is "$(jq -r .ok "$T/good.out")" true "good guest's report is clean"
ok "good guest verified data" test "$(jq '.devices[0].verify.sectors' "$T/good.out")" -gt 0
is "$(jq '.devices[0].verify.mismatches + .devices[0].errors.error + .devices[0].errors.bad_responses' "$T/good.out")" 0 \
    "no mismatches, errors or bad responses"

# With the good guest gone, the backend's CPU use is all the broken ring's:
# it must stop serving it, not spin.
cpu() { awk '{print $14 + $15}' "/proc/$SIMBACK_PID/stat"; }
dom=$((dom + 1))
front_start $dom "xvdb:$T/evil.img" --evil ring-overrun --timeout 5s
wait_for 10 grep -q "ring-overrun" "$T/f.out"
c0=$(cpu); sleep 2; c1=$(cpu)
front_wait
ok "backend did not spin on the broken ring (< 0.5 s CPU in 2 s)" test $((c1 - c0)) -lt 50
done_testing
