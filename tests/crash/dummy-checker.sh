#!/bin/sh
# tests/crash/dummy-checker.sh - stand-in CHECKER for tests/crash/crash-loop.sh,
# run inside the VM (vm/run --disk, busybox sh) after a killed WRITER run.
#
# Usage: dummy-checker.sh ROUND LAST_DURABLE
#
# Checks what tests/crash/dummy-writer.sh left on /mnt/disk:
#   * state.img exists, unless nothing was ever reported durable
#     (LAST_DURABLE = 0);
#   * its header "CRASHSTATE gen=N bytes=B sha256=HEX" is intact, the file
#     is exactly header + B bytes, and those bytes hash to HEX (no torn or
#     mixed generation);
#   * N >= LAST_DURABLE (no generation the writer called durable is lost);
#   * durable.log holds only "durable K" lines; its largest K is <= N (it is
#     written after the state) and >= LAST_DURABLE (it is fsynced before the
#     console line);
#   * /test/files/crash-loop.durable (the host's record of every DURABLE
#     line) agrees with LAST_DURABLE: the harness's side channel works.
# Prints "CHECK: ..." lines; exits 0 when all hold, 1 otherwise.
D=/mnt/disk
round=${1:-?}
last=${2:-0}

fail() { echo "CHECK FAIL: round $round: $*"; exit 1; }

[ -d "$D" ] || fail "$D is not mounted (vm/run --disk)"
if [ ! -e "$D/state.img" ]; then
    [ "$last" -eq 0 ] || fail "state.img is missing but generation $last was reported durable"
    echo "CHECK: round $round: no state.img yet, and nothing was reported durable"
    exit 0
fi

hdr=$(head -c 200 "$D/state.img" | head -n 1)
set -- $(printf '%s\n' "$hdr" |
    sed -n 's/^CRASHSTATE gen=\([0-9][0-9]*\) bytes=\([0-9][0-9]*\) sha256=\([0-9a-f]\{64\}\)$/\1 \2 \3/p')
[ $# -eq 3 ] || fail "state.img has no valid header (size $(stat -c %s "$D/state.img"), starts with: $(head -c 60 "$D/state.img" | tr -c '[:print:]' '.'))"
gen=$1 bytes=$2 want=$3

size=$(stat -c %s "$D/state.img")
[ "$size" -eq $((${#hdr} + 1 + bytes)) ] ||
    fail "state.img generation $gen is $size bytes, its header says $((${#hdr} + 1 + bytes))"
got=$(tail -c "$bytes" "$D/state.img" | sha256sum)
[ "${got%% *}" = "$want" ] || fail "state.img generation $gen: body checksum mismatch (torn or mixed write)"
[ "$gen" -ge "$last" ] || fail "state.img holds generation $gen, but generation $last was reported durable"

logmax=0
if [ -e "$D/durable.log" ]; then
    bad=$(grep -cvE '^durable [0-9]+$' "$D/durable.log")
    [ "$bad" -eq 0 ] || fail "durable.log has $bad malformed line(s)"
    logmax=$(sed 's/^durable //' "$D/durable.log" | sort -n | tail -n 1)
    logmax=${logmax:-0}
fi
[ "$logmax" -le "$gen" ] || fail "durable.log says generation $logmax was durable, state.img holds $gen"
[ "$logmax" -ge "$last" ] || fail "durable.log stops at generation $logmax, but $last was reported durable"

if [ -f /test/files/crash-loop.durable ]; then
    rec=$(sed -n 's/^[0-9]* DURABLE \([0-9][0-9]*\)$/\1/p' /test/files/crash-loop.durable | sort -n | tail -n 1)
    [ "${rec:-0}" -eq "$last" ] ||
        fail "crash-loop.durable's newest generation is ${rec:-none}, LAST_DURABLE is $last"
fi

echo "CHECK: round $round: ok, state.img generation $gen (last reported durable $last, durable.log up to $logmax)"
exit 0
