# t/engback-lib.sh - the request engine behind the real XenBus backend
# (t/helpers/engback) with vbd-front guests, for t/254 and t/255; sourced
# after lib.sh and sim-lib.sh, once sim_start ran.
#   engback_start [engback options]   the backend; its pid in $EB_PID
#   guest [vbd-front options]         a fresh domain runs them against xvda
#                                     ($T/a.img, raw), waited for; its output
#                                     is shown when it fails
ENGBACK=$VBDFS_BUILD/t/helpers/engback

engback_start() {
    "$ENGBACK" --sim "$SIM" "$@" >"$T/eb.out" 2>"$T/eb.err" &
    EB_PID=$!
    at_exit "kill $EB_PID 2>/dev/null; wait $EB_PID 2>/dev/null"
    wait_for 10 grep -q ready "$T/eb.out" || bail_out "engback did not start: $(cat "$T/eb.err")"
}

DOM=20
guest() {
    DOM=$((DOM + 1))
    "$VBD_FRONT" --sim "$SIM" --domid "$DOM" --wait --timeout 20s "$@" xvda \
        >"$T/f.out" 2>"$T/f.err" &
    _fp=$!
    wait_for 10 xenstore-read "/local/domain/$DOM/name" || diag "domain $DOM did not appear"
    "$VBDCTL" --sim "$SIM" attach "$DOM" xvda "$T/a.img" --format raw >"$T/attach.out" 2>&1 ||
        diag "attach failed: $(cat "$T/attach.out")"
    wait "$_fp"
    _rc=$?
    [ $_rc = 0 ] || { grep -hv '^PASS' "$T/f.out" "$T/f.err" | sed 's/^/#   /' | tail -n 25 >&2; }
    return $_rc
}
