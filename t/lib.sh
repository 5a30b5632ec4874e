# t/lib.sh - shared helpers for vbdfs' shell end-to-end tests (TAP).
#
#   . "$(dirname "$0")/lib.sh"
#   plan 3
#   ok "description" command args...     # passes if the command exits 0
#   is "$got" "$want" "description"
#   skip_all "why"                        # the whole test, before plan
#   is "$x" 1 "name" || diag_file "$T/log" # ok/is/like/fails return 1 on
#                                         # failure: show the logs that explain it
#   done_testing
#
# Every test gets a private scratch directory $T (removed at exit) and the
# programs under test as $VBD_IMG, $VBDFS, $VBDCTL, $VBD_FRONT.  cleanup
# commands registered with at_exit run in reverse order, even on failure.

set -u
VBDFS_SRC=${VBDFS_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
VBDFS_BUILD=${VBDFS_BUILD:-$VBDFS_SRC/build}
VBD_IMG=$VBDFS_BUILD/vbd-img
VBDFS=$VBDFS_BUILD/vbdfs
VBDCTL=$VBDFS_BUILD/vbdctl
VBD_FRONT=$VBDFS_BUILD/vbd-front
export VBDFS_SRC VBDFS_BUILD

T=$(mktemp -d "${TMPDIR:-/tmp}/vbdfs-test.XXXXXX")
_tap_n=0
_tap_failed=0
_tap_plan=
_at_exit=""

at_exit() { _at_exit="$*; $_at_exit"; }

_tap_cleanup() {
    eval "$_at_exit" >/dev/null 2>&1
    rm -rf "$T"
}
trap '_tap_cleanup' EXIT
trap 'exit 130' INT TERM

plan() { _tap_plan=$1; echo "1..$1"; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
diag() { echo "# $*" >&2; }
# diag_file FILE... : show files (a failed step's logs) as TAP comments
diag_file() {
    for _f in "$@"; do
        echo "# --- $_f" >&2
        sed 's/^/#   /' "$_f" >&2
    done
}
bail_out() { echo "Bail out! $*"; exit 255; }

_result() {
    _tap_n=$((_tap_n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $_tap_n - $2"
    else
        echo "not ok $_tap_n - $2"
        _tap_failed=$((_tap_failed + 1))
        return 1
    fi
}

# ok "name" cmd...   : pass if cmd exits 0; its output goes to $T/last.out
ok() {
    _name=$1; shift
    if "$@" >"$T/last.out" 2>&1; then _result 0 "$_name"
    else
        _rc=$?
        _result 1 "$_name"
        diag "command failed (exit $_rc): $*"
        sed 's/^/#   /' "$T/last.out" | head -n 20 >&2
        return 1
    fi
}

# fails "name" cmd... : pass if cmd exits non-zero
fails() {
    _name=$1; shift
    if "$@" >"$T/last.out" 2>&1; then
        _result 1 "$_name"; diag "command unexpectedly succeeded: $*"; return 1
    else _result 0 "$_name"; fi
}

is() {
    if [ "$1" = "$2" ]; then _result 0 "$3"
    else
        _result 1 "$3"
        diag "     got: '$1'"
        diag "expected: '$2'"
        return 1
    fi
}

# like "$got" "regex" "name"
like() {
    if printf '%s\n' "$1" | grep -Eq -- "$2"; then _result 0 "$3"
    else _result 1 "$3"; diag "'$1' does not match /$2/"; return 1; fi
}

skip() { _n=$1; shift; while [ "$_n" -gt 0 ]; do _tap_n=$((_tap_n + 1)); echo "ok $_tap_n # skip $*"; _n=$((_n - 1)); done; }

done_testing() {
    [ -n "$_tap_plan" ] || echo "1..$_tap_n"
    if [ -n "$_tap_plan" ] && [ "$_tap_plan" != "$_tap_n" ]; then
        diag "planned $_tap_plan tests but ran $_tap_n"; exit 1
    fi
    [ "$_tap_failed" = 0 ]
}

# vbdfs_sim [vbdfs options...] : start `vbdfs --sim $T/sim -f` in the
# background (SIM, VPID, log $T/vbdfs.log; XENSTORED_PATH exported for
# xenstore-* and vbdctl), stopped at exit; waits until it says it is ready
# (non-zero if it does not within 10 s).
vbdfs_sim() {
    SIM=$T/sim
    XENSTORED_PATH=$SIM/xenstored
    export XENSTORED_PATH
    "$VBDFS" --sim "$SIM" -f "$@" >"$T/vbdfs.log" 2>&1 &
    VPID=$!
    at_exit "kill $VPID 2>/dev/null; wait $VPID 2>/dev/null"
    wait_for 10 grep -q ready "$T/vbdfs.log"
}

# sim_guest VAR DOMID VDEV IMAGE FORMAT [vbd-front options] : with
# vbdfs_sim running, a vbd-front guest as domain DOMID in the background
# (its pid in $VAR, its report in $T/VAR.out), then IMAGE attached to it
# (FORMAT "ro": read-only, format probed).  Returns the attach's status,
# whose output is in $T/VAR.attach.
sim_guest() {
    g_var=$1 g_dom=$2 g_vdev=$3 g_img=$4 g_fmt=$5
    shift 5
    "$VBD_FRONT" --sim "$SIM" --domid "$g_dom" --wait "$@" "$g_vdev" >"$T/$g_var.out" 2>&1 &
    eval "$g_var=\$!"
    at_exit "kill -9 \$$g_var 2>/dev/null"
    wait_for 10 xenstore-read "/local/domain/$g_dom/name"
    if [ "$g_fmt" = ro ]; then set -- --readonly; else set -- --format "$g_fmt"; fi
    "$VBDCTL" --sim "$SIM" attach "$g_dom" "$g_vdev" "$g_img" "$@" --wait 5 >"$T/$g_var.attach" 2>&1
}

# need_root, need_fuse, need_cmd: skip the whole test with a reason.
need_root() { [ "$(id -u)" = 0 ] || skip_all "needs root ($*)"; }
need_fuse() {
    [ -c /dev/fuse ] || skip_all "needs /dev/fuse for a real FUSE mount"
    command -v fusermount3 >/dev/null || skip_all "needs fusermount3 (Debian package fuse3)"
}
need_cmd() { command -v "$1" >/dev/null 2>&1 || skip_all "needs $1${2:+ (Debian package $2)}"; }

# wait_for SECONDS cmd... : poll until cmd succeeds; non-zero on timeout
wait_for() {
    _secs=$1; shift
    _i=0
    while [ "$_i" -lt $((_secs * 20)) ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
        _i=$((_i + 1))
    done
    return 1
}
