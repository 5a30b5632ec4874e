# t/sim-lib.sh - start the simulated hypervisor for a shell test.
#   . "$(dirname "$0")/sim-lib.sh"      (after lib.sh)
#   sim_start                            # $SIM is its directory; XENSTORED_PATH set
SIMD=$VBDFS_BUILD/t/helpers/simd
SIMGUEST=$VBDFS_BUILD/t/helpers/simguest

sim_start() {
    SIM=$T/sim
    "$SIMD" "$SIM" >"$T/simd.out" 2>"$T/simd.err" &
    SIMD_PID=$!
    at_exit "kill $SIMD_PID 2>/dev/null; wait $SIMD_PID 2>/dev/null"
    wait_for 30 grep -q ready "$T/simd.out" || bail_out "simd did not start: $(cat "$T/simd.err")"
    XENSTORED_PATH=$SIM/xenstored
    export XENSTORED_PATH
}

# sim_alive: the simulator process still runs
sim_alive() { kill -0 "$SIMD_PID" 2>/dev/null; }
