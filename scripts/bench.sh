#!/usr/bin/env bash
# make bench: run build/bench/bench in the VM (20 GiB guest, the largest this
# 24 GiB host can give) and print the BENCH lines at the end; they are also
# saved to build/bench/results.txt (the full console log goes to
# build/bench/bench.log).
#   MORSEL_BENCH_MEM=12G MORSEL_MODULE=/tmp/m.ko scripts/bench.sh [bench options]
#   (bench options: e.g. --sizes 1G,4G --reps 3; see bench/bench.c)
#   MORSEL_BENCH_SKIP=core|persist|gup  leave one of the three boots out
#   MORSEL_BENCH_PERSIST_ARGS="--reps 5" options of bench/bench_persist.c
#   MORSEL_BENCH_GUP_ARGS="--only sqlite" options of bench/bench_gup.c
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=build/bench/bench
OUT=build/bench/results.txt
LOG=build/bench/bench.log
[ -x "$BIN" ] || { echo "bench.sh: $BIN missing (make $BIN)" >&2; exit 1; }
mkdir -p build/bench

rc=0
out=
if [ "${MORSEL_BENCH_SKIP:-}" != core ]; then
	out=$(./vm/run --mem "${MORSEL_BENCH_MEM:-20G}" --cpus 2 --timeout 3000 \
		${MORSEL_MODULE:+--module "$MORSEL_MODULE"} \
		--keep-log "$LOG" -- "$BIN" "$@" 2>&1 | tee /dev/stderr)
	rc=$?
fi

# Persistence (bench/bench_persist.c): a second boot with an ext4 disk
# (virtio-blk, a sparse file here) and the host's GNU cp and dd as baselines.
if [ "${MORSEL_BENCH_SKIP:-}" != persist ]; then
	PBIN=build/bench/bench_persist
	files=build/bench/files
	disk=build/bench/disk.img
	rm -rf "$files" && mkdir -p "$files"
	scripts/gnu-tools.sh "$files/gnu"
	rm -f "$disk" && truncate -s 8G "$disk" && mkfs.ext4 -F -q "$disk"
	pout=$(./vm/run --mem "${MORSEL_BENCH_MEM:-20G}" --cpus 2 --timeout 3000 \
		${MORSEL_MODULE:+--module "$MORSEL_MODULE"} --disk "$disk" \
		--files "$files" --keep-log "build/bench/bench-persist.log" \
		-- "$PBIN" ${MORSEL_BENCH_PERSIST_ARGS:-} 2>&1 | tee /dev/stderr)
	prc=$?
	rm -f "$disk"
	out="$out
$pout"
	[ "$prc" -eq 0 ] || rc=$prc
fi

# Memory the rest of the kernel uses (bench/bench_gup.c, issue 12): a third
# boot with an ext4 disk for O_DIRECT; SQLite on morselfs against tmpfs.
if [ "${MORSEL_BENCH_SKIP:-}" != gup ]; then
	disk=build/bench/disk-gup.img
	rm -f "$disk" && truncate -s 4G "$disk" && mkfs.ext4 -F -q "$disk"
	gout=$(./vm/run --mem "${MORSEL_BENCH_MEM:-20G}" --cpus 2 --timeout 3000 \
		${MORSEL_MODULE:+--module "$MORSEL_MODULE"} --disk "$disk" \
		--keep-log "build/bench/bench-gup.log" \
		-- build/bench/bench_gup ${MORSEL_BENCH_GUP_ARGS:-} 2>&1 | tee /dev/stderr)
	grc=$?
	rm -f "$disk"
	out="$out
$gout"
	[ "$grc" -eq 0 ] || rc=$grc
fi

grep -E '^(BENCH |# skipped)' <<<"$out" > "$OUT"
echo
echo "== results ($OUT)"
cat "$OUT"
if [ "$rc" -ne 0 ]; then
	echo "bench.sh: vm/run failed (exit $rc), see $LOG" >&2
fi
exit "$rc"
