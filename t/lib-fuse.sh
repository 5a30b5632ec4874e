# t/lib-fuse.sh - helpers for the /vbd FUSE tree tests (t/400-t/449), sourced
# after lib.sh.  Skips the test unless we can really mount FUSE as root.
need_root "mounts FUSE"
need_fuse
need_cmd qemu-img qemu-utils
FUSETREE=$VBDFS_BUILD/t/helpers/fusetree
M=$T/mnt
CTL=$T/ctl
_tseq=0

# pattern_images : 16 MiB images with the same pattern of data, zeros and
# holes: $T/a.raw, $T/b.qcow2 and $T/c.qcow2 (a.raw, zlib-compressed)
pattern_images() {
    for _pi in "raw a.raw" "qcow2 b.qcow2"; do
        set -- $_pi
        qemu-img create -q -f "$1" "$T/$2" 16M
        qemu-io -f "$1" -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 192k' \
            -c 'write -P 0x33 5M 4k' -c 'write -z 6M 64k' -c 'write -P 0x44 15M 1M' \
            "$T/$2" >/dev/null
    done
    qemu-img convert -c -O qcow2 "$T/a.raw" "$T/c.qcow2"
}

# start_tree [fusetree options] : mount the tree at $M, driven through $CTL
start_tree() {
    mkdir -p "$M"
    "$FUSETREE" "$@" "$M" "$CTL" >"$T/tree.out" 2>"$T/tree.err" &
    TREE_PID=$!
    at_exit "stop_tree"
    if ! wait_for 10 grep -q '^ready' "$T/tree.out"; then
        cat "$T/tree.err" >&2
        bail_out "fusetree did not mount"
    fi
}

# stop_tree : ask the helper to quit (SIGTERM) and unmount if it did not.
# Returns the helper's exit status (0 = clean stop, no sanitizer report);
# its stderr is shown when that is not 0.
stop_tree() {
    _rc=0
    if [ -n "${TREE_PID:-}" ]; then
        kill -TERM "$TREE_PID" 2>/dev/null
        wait_exit "$TREE_PID" 20; _rc=$?
        [ "$_rc" = 0 ] || sed 's/^/#   /' "$T/tree.err" | head -n 40 >&2
    fi
    # Also when the helper died: a dead FUSE mount fails mountpoint(1).
    grep -q " $M fuse" /proc/mounts && fusermount3 -uz "$M" 2>/dev/null
    TREE_PID=
    return $_rc
}

# tcmd CMD ARGS... : run one fusetree command; non-zero (message on
# stderr) if it failed.
tcmd() {
    _tseq=$((_tseq + 1))
    echo "$_tseq $*" >"$CTL"
    if ! wait_for 20 grep -Eq "^(done|fail) $_tseq( |\$)" "$T/tree.out"; then
        echo "fusetree: no answer to '$*'" >&2; return 1
    fi
    if grep -q "^fail $_tseq " "$T/tree.out"; then
        grep "^fail $_tseq " "$T/tree.out" >&2; return 1
    fi
    return 0
}

# wait_exit PID SECS : wait for PID (a child) to exit, at most SECS; its exit
# status, or 124 (and a SIGKILL) on timeout.
wait_exit() {
    _i=0
    while kill -0 "$1" 2>/dev/null && [ $_i -lt $(($2 * 20)) ]; do sleep 0.05; _i=$((_i+1)); done
    if kill -0 "$1" 2>/dev/null; then kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null; return 124; fi
    wait "$1"
}
