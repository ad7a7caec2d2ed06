#!/usr/bin/env bash
# make fuzz-ops: the operation fuzzer (tests/vm/test_opfuzz.c) for a long
# time in one VM with an ext4 disk at /mnt/disk, on the stock kernel.
# Prints progress every minute and the op counts per kind at the end; on a
# divergence, the seed, the epoch's op log and the minimised sequence.
#   FUZZ_OPS_SECS=14400   seconds of fuzzing (default 3600)
#   FUZZ_OPS_PAGING=5     4 or 5
#   FUZZ_OPS_SEED=N       seed (default: chosen and printed by the program)
#   FUZZ_OPS_WORKERS=4
#   FUZZ_OPS_TIGHT=1      --tight: each worker on a small mount it fills
# Log: build/opfuzz/long-<date>.log (console) and .out (program output).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
secs=${FUZZ_OPS_SECS:-3600}
paging=${FUZZ_OPS_PAGING:-5}
workers=${FUZZ_OPS_WORKERS:-4}
mkdir -p build/opfuzz
stamp=$(date -u +%Y%m%d-%H%M%S)
log=build/opfuzz/long-$stamp.log
disk=build/opfuzz/disk-$stamp.img
rm -f "$disk" && truncate -s 2G "$disk" && mkfs.ext4 -F -q "$disk"
args=(--secs "$secs" --workers "$workers" --progress 60)
[ -z "${FUZZ_OPS_SEED:-}" ] || args+=(--seed "$FUZZ_OPS_SEED")
[ "${FUZZ_OPS_TIGHT:-0}" = 0 ] || args+=(--tight)
echo "== opfuzz: $secs s, $workers workers, $paging-level paging (log: $log)"
t0=$(date +%s)
./vm/run --paging "$paging" --mem 4G --timeout $((secs + 900)) --disk "$disk" \
	--keep-log "$log" -- build/tests/vm/test_opfuzz "${args[@]}" 2>&1 |
	tee "${log%.log}.out"
rc=${PIPESTATUS[0]}
echo "== opfuzz: exit $rc after $(($(date +%s) - t0)) s wall"
rm -f "$disk"
exit "$rc"
