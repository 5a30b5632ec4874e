# t/front-lib.sh - run vbd-front as a guest for the t/350-399 tests.
#   . lib.sh; . sim-lib.sh; . front-lib.sh   (after sim_start)
#
# A simulated domain lives as long as its vbd-front process, so a guest's
# disks are attached after it registered, as a toolstack would hot-plug
# them:
#   front_run DOMID "VDEV:IMAGE[:FORMAT] ..." [vbd-front options]
# starts vbd-front --wait for those disks, attaches them with vbdctl,
# and returns vbd-front's exit status; its output is in $T/f.out, $T/f.err.
#   front_start ...   the same in the background ($FRONT_PID); front_wait

front_start() {
    _dom=$1 _disks=$2
    shift 2
    _names=""
    for _d in $_disks; do _names="$_names ${_d%%:*}"; done
    # shellcheck disable=SC2086
    "$VBD_FRONT" --sim "$SIM" --domid "$_dom" --wait "$@" $_names >"$T/f.out" 2>"$T/f.err" &
    FRONT_PID=$!
    at_exit "kill -9 $FRONT_PID 2>/dev/null"
    wait_for 10 xenstore-read "/local/domain/$_dom/name" ||
        diag "domain $_dom did not appear: $(head -c 300 "$T/f.err")"
    for _d in $_disks; do
        _vdev=${_d%%:*}; _rest=${_d#*:}; _img=${_rest%%:*}; _fmt=raw
        case $_rest in *:*) _fmt=${_rest#*:} ;; esac
        "$VBDCTL" --sim "$SIM" attach "$_dom" "$_vdev" "$_img" --format "$_fmt" \
            >>"$T/attach.out" 2>&1 || diag "vbdctl attach $_dom $_vdev failed: $(tail -n 1 "$T/attach.out")"
    done
}

front_wait() { wait "$FRONT_PID"; }

front_run() { front_start "$@"; front_wait; }

# simback_start [ARGS]: the backend (xenbus + real engine, no FUSE) on $SIM
SIMBACK=$VBDFS_BUILD/t/helpers/simback
simback_start() {
    # the hypervisor socket exists a moment before simd listens on it
    wait_for 10 grep -q ready "$T/simd.out" || bail_out "simd not ready: $(cat "$T/simd.err")"
    "$SIMBACK" "$SIM" "$@" >"$T/simback.out" 2>"$T/simback.err" &
    SIMBACK_PID=$!
    at_exit "kill $SIMBACK_PID 2>/dev/null; wait $SIMBACK_PID 2>/dev/null"
    wait_for 10 grep -q ready "$T/simback.out" || bail_out "simback did not start: $(cat "$T/simback.err")"
}
simback_alive() { kill -0 "$SIMBACK_PID" 2>/dev/null; }

# jf EXPR: a jq expression over the last --json report ($T/f.out)
jf() { jq -r "$1" "$T/f.out"; }
