#!/bin/sh
# The backend restarting under connected guests (real Xen: the daemon is
# restarted while domains run): after a crash the frontend is left
# Connected to a dead backend and must be reset (Closing, then InitWait
# once it closed); after a clean stop it is Closed and gets InitWait at
# once, which Linux blkfront answers by reconnecting.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim-lib.sh"
. "$(dirname "$0")/xb-lib.sh"
need_cmd xenstore-write xenstore-utils
plan 10
sim_start
xbback_start
domain_up 5 web5
truncate -s 8M "$T/d.img"
BE=$(be_path 5 51712)
FE=$(fe_path 5 51712)
"$VBDCTL" attach 5 xvda "$T/d.img" --format raw --wait 5
front_connect "$FE"
ok "connected" wait_xs 5 "$BE/state" 4

# Crash: nothing is cleaned up, the frontend still thinks it is connected.
kill -9 "$XBBACK_PID"; wait "$XBBACK_PID" 2>/dev/null
is "$(xenstore-read "$BE/state")" 4 "after a crash the backend dir still says Connected"
xbback_start
ok "restarted backend resets the stale frontend: Closing" wait_xs 5 "$BE/state" 5
is "$(engine_count '^start')" 0 "no engine started on stale ring keys"
xenstore-write "$FE/state" 6
# (Closed for a moment, which a poll may miss, then:)
ok "once the frontend closed, InitWait: a new connection is offered" wait_xs 5 "$BE/state" 2
front_connect "$FE"
ok "the frontend reconnects" wait_xs 5 "$BE/state" 4

# Clean stop and start: the guest answered Closing with Closed.
kill -TERM "$XBBACK_PID"; wait "$XBBACK_PID"
is "$(xenstore-read "$BE/state")" 6 "clean stop leaves the backend Closed"
xenstore-write "$FE/state" 6
xbback_start
ok "restarted backend offers InitWait to the Closed frontend" wait_xs 5 "$BE/state" 2
front_connect "$FE"
ok "reconnected" wait_xs 5 "$BE/state" 4
is "$(engine_count '^start')" 1 "one engine started by the new backend"
done_testing
