#!/bin/sh
# The README's main job (make demo).  Placeholder until the /vbd demo lands:
# shows what has been built so far.
set -eu
B=${VBDFS_BUILD:-build}
echo "vbdfs is being built up layer by layer; programs available so far:"
for p in vbdfs vbdctl vbd-front vbd-img; do
    if [ -x "$B/$p" ]; then
        echo
        echo "== $p --help"
        "$B/$p" --help
    fi
done
echo
echo "Run 'make check' to run the test suite."
