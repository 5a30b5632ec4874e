# t/xb-lib.sh - helpers for the XenBus backend tests (t/300-349).
#   . "$(dirname "$0")/lib.sh"; . "$(dirname "$0")/sim-lib.sh"; . "$(dirname "$0")/xb-lib.sh"
#
#   xbback_start [ARGS]      the backend with a fake engine (t/helpers/xbback);
#                            its engine log is $T/xbback.out
#   domain_up DOMID NAME     a guest domain appears (introduced, named)
#   domain_down DOMID        it dies (@releaseDomain, its nodes removed)
#   be_path / fe_path DOMID DEVID, xs_is PATH VALUE, wait_xs SECS PATH VALUE
#   front_connect FE [k v]...  the frontend's connect transaction + state 3
XBBACK=$VBDFS_BUILD/t/helpers/xbback
XSDOMAIN=$VBDFS_BUILD/t/helpers/xsdomain

xbback_start() {
    "$XBBACK" "$@" >"$T/xbback.out" 2>"$T/xbback.err" &
    XBBACK_PID=$!
    at_exit "kill $XBBACK_PID 2>/dev/null; wait $XBBACK_PID 2>/dev/null"
    wait_for 10 grep -q ready "$T/xbback.out" || bail_out "xbback did not start: $(cat "$T/xbback.err")"
}

# xbback_stop: SIGTERM and wait; non-zero if it did not exit cleanly
xbback_stop() {
    kill -TERM "$XBBACK_PID" && wait "$XBBACK_PID"
}

domain_up() { "$XSDOMAIN" introduce "$1" "$2"; }
domain_down() { "$XSDOMAIN" release "$1"; }

be_path() { echo "/local/domain/0/backend/${BETYPE:-vbdfs}/$1/$2"; }
fe_path() { echo "/local/domain/$1/device/vbd/$2"; }

xs_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
# wait_xs SECS PATH VALUE
wait_xs() { wait_for "$1" xs_is "$2" "$3"; }

# front_connect FE [key value]... : one page, one queue, x86_64, state 3,
# plus any extra keys given (written in the same transaction)
front_connect() {
    _fe=$1; shift
    _args=""
    while [ $# -ge 2 ]; do _args="$_args $_fe/$1 $2"; shift 2; done
    # shellcheck disable=SC2086
    xenstore-write "$_fe/ring-ref" 8 "$_fe/event-channel" 5 "$_fe/protocol" x86_64-abi \
        "$_fe/feature-persistent" 1 $_args "$_fe/state" 3
}

# count lines of the fake engine log matching a regex
engine_count() { grep -cE "$1" "$T/xbback.out"; }
