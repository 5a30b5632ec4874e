#!/bin/sh
# Simulated guests as real processes: a guest talks to xenstore as itself
# with Debian's tools, is confined by permissions, and when it is killed its
# domain vanishes (@releaseDomain, /local/domain/N removed); other guests
# are untouched.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim-lib.sh"
need_cmd xenstore-ls xenstore-utils
plan 17
sim_start

"$SIMGUEST" "$SIM" 7 seven >"$T/g7.out" 2>"$T/g7.err" &
G7=$!
at_exit "kill $G7 2>/dev/null"
"$SIMGUEST" "$SIM" 8 eight >"$T/g8.out" 2>&1 &
G8=$!
at_exit "kill $G8 2>/dev/null"
wait_for 30 test -S "$SIM/xenstored.d/7" && wait_for 30 test -S "$SIM/xenstored.d/8" ||
    bail_out "guests did not register: $(cat "$T/g7.err" "$T/g8.out")"
is "$(cat "$T/g7.out")" "$SIM/xenstored.d/7" "guest prints its xenstore socket"
is "$(xenstore-read /local/domain/7/name)" "seven" "dom0 sees the guest's name"
ok "domain 7 introduced" test "$(xenstore-ls /local/domain | grep -c '^[78] ')" = 2

as7() { XENSTORED_PATH=$SIM/xenstored.d/7 "$@"; }
is "$(as7 xenstore-read name)" "seven" "guest reads its name through a relative path"
ok "guest writes its data/" as7 xenstore-write data/hello world
is "$(xenstore-read /local/domain/7/data/hello)" "world" "dom0 reads the guest's write"
fails "guest cannot write dom0's nodes" as7 xenstore-write /local/domain/0/name x
fails "guest cannot read dom0's nodes" as7 xenstore-read /local/domain/0/name
fails "guest cannot write another guest's nodes" as7 xenstore-write /local/domain/8/data/x y
fails "guest cannot list another guest's directory" as7 xenstore-ls /local/domain/8

# Kill the guest: its domain goes away and watchers hear of it.
timeout 60 xenstore-watch -n 2 @releaseDomain >"$T/rel.out" 2>&1 &
W=$!
at_exit "kill $W 2>/dev/null"
wait_for 20 grep -q @releaseDomain "$T/rel.out"
kill -9 $G7
wait $G7 2>/dev/null
wait $W
is "$(cat "$T/rel.out" | tr '\n' ' ')" "@releaseDomain @releaseDomain " "@releaseDomain fires on guest death"
fails "/local/domain/7 removed" xenstore-exists /local/domain/7
ok "its socket removed" wait_for 20 test ! -e "$SIM/xenstored.d/7"
is "$(xenstore-read /local/domain/8/name)" "eight" "the other guest is untouched"
ok "domain id 7 can register again" sh -c "'$SIMGUEST' '$SIM' 7 again --exit-after-stdin </dev/null"
ok "a registration of a live domain id fails" sh -c "! '$SIMGUEST' '$SIM' 8 dup --exit-after-stdin </dev/null"
ok "simulator still running" sim_alive
done_testing
