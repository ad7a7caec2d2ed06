#!/usr/bin/env bash
# make test-debug: the whole VM suite (tests/vm/run-suite.sh, as in
# scripts/test.sh) on the debug kernel of scripts/debug-kernel.sh (KASAN,
# lockdep, KFENCE, kmemleak, DEBUG_VM, ...), once in 5-level and once in
# 4-level paging.  The module is built against the debug tree in
# build/debug-kmod/ (kmod/morsel.ko, which the stock tests load, is not
# touched); the test programs are the ones `make` built in build/tests/vm/,
# with the debug kernel's KVM modules in kmods/.  Ends with one line
# "N passed, M failed"; every kernel report found is copied into
# build/debug-suite/reports-pagingP.txt and printed.  docs/debug-kernel.md.
#
#   MORSEL_TESTS="test_a test_b"      only those VM tests
#   MORSEL_DEBUG_PAGING="5"           only one paging mode (default "5 4")
#   MORSEL_DEBUG_MEM=3G               guest memory (KASAN's shadow is 1/8 of it)
#   MORSEL_DEBUG_TIMEOUT=14400        seconds for one whole suite run
#   MORSEL_DEBUG_TEST_TIMEOUT=1800    seconds for one test (run-suite.sh: 300)
#   MORSEL_DEBUG_KMEMLEAK=1           boot with kmemleak=on (0: off)
#   MORSEL_DEBUG_APPEND="..."         more kernel command line
#   MORSEL_DEBUG_CRASH_ROUNDS=0       rounds of the crash loop on the debug
#                                     kernel (tests/crash; each boots twice)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
exec 2>&1
OUT=build/debug-suite
MEM=${MORSEL_DEBUG_MEM:-3G}
TIMEOUT=${MORSEL_DEBUG_TIMEOUT:-14400}
TEST_TIMEOUT=${MORSEL_DEBUG_TEST_TIMEOUT:-1800}
PAGINGS=${MORSEL_DEBUG_PAGING:-5 4}
CRASH_ROUNDS=${MORSEL_DEBUG_CRASH_ROUNDS:-0}

t_start=$(date +%s)
# --- the kernel (built once, then reused: see its stamp) ---------------------
scripts/debug-kernel.sh || { echo "test-debug: the debug kernel did not build"; echo "0 passed, 1 failed"; exit 1; }
eval "$(scripts/debug-kernel.sh --print-env)"
echo "== debug kernel $DK_RELEASE: $DK_IMAGE"

# --- the module, built against the debug tree in a copy of kmod/ --------------
# kmod/Kbuild includes ../include: the copy keeps that layout.  -g lets
# scripts/faddr2line turn a report's "func+0x1c/0x200 [morsel]" into a line.
KM=build/debug-kmod
rm -rf "$KM"
mkdir -p "$KM/kmod" "$KM/include"
cp kmod/Kbuild kmod/Makefile kmod/*.c kmod/*.h "$KM/kmod/"
cp -a include/. "$KM/include/"
KM=$(cd "$KM" && pwd)
echo "== module: $KM/kmod/morsel.ko (log: $KM/build.log)"
if ! make -C "$DK_OBJ" M="$KM/kmod" KCFLAGS=-g modules > "$KM/build.log" 2>&1; then
	tail -n 40 "$KM/build.log"
	echo "test-debug: morsel.ko does not build against $DK_RELEASE"
	echo "0 passed, 1 failed"
	exit 1
fi
grep -E 'warning:|WARNING:' "$KM/build.log" || true

# --- the guest's files: test programs, the debug kernel's KVM modules ---------
rm -rf "$OUT/files"
mkdir -p "$OUT/files"
cp -a build/tests/vm/. "$OUT/files/"
rm -rf "$OUT/files/kmods"
mkdir -p "$OUT/files/kmods"
for m in irqbypass kvm ccp kvm-amd; do
	f=$(find "$DK_MODULES" -name "$m.ko" | head -n1)
	[ -n "$f" ] && cp "$f" "$OUT/files/kmods/" || echo "test-debug: no $m.ko in $DK_MODULES (test_kvm will skip)"
done
touch "$OUT/files/kmods/.stamp"

# run-suite.sh gives each test 300 s, too little for some under KASAN and
# TCG: a copy with TEST_TIMEOUT.
sed "s/timeout 300 /timeout $TEST_TIMEOUT /" tests/vm/run-suite.sh > "$OUT/run-suite.sh"
chmod 0755 "$OUT/run-suite.sh"
if ! grep -q "timeout $TEST_TIMEOUT " "$OUT/run-suite.sh"; then
	echo "test-debug: run-suite.sh has no 'timeout 300': tests keep its own limit"
fi

APPEND="kfence.sample_interval=10"
[ "${MORSEL_DEBUG_KMEMLEAK:-1}" = 0 ] || APPEND="$APPEND kmemleak=on"
[ -z "${MORSEL_DEBUG_APPEND:-}" ] || APPEND="$APPEND $MORSEL_DEBUG_APPEND"
VMARGS=(--kernel "$DK_IMAGE" --modules-dir "$DK_MODULES" --append "$APPEND"
	--module "$KM/kmod/morsel.ko" --mem "$MEM")

# Kernel reports in a log: the console gets KERN_WARNING and worse only
# (loglevel=5), so every line with a kernel timestamp is worth reading;
# and the harness's leak lines.
reports() {
	tr -d '\r' < "$1" | grep -E '\[ *[0-9]+\.[0-9]+\]|MORSEL-HARNESS: (leak |kmemleak)' |
		grep -vE '\] reboot: Power down$'
}

pass=0; fail=0; failed=()
declare -A took
for paging in $PAGINGS; do
	log="$OUT/suite-paging$paging.log"
	echo "== debug VM suite, $paging-level paging (log: $log)"
	t0=$(date +%s)
	./vm/run "${VMARGS[@]}" --paging "$paging" --timeout "$TIMEOUT" \
		--files "$OUT/files" --keep-log "$log" \
		-- "$OUT/run-suite.sh" ${MORSEL_TESTS:-} 2>&1 | tee "$log.out"
	rc=${PIPESTATUS[0]}
	took[$paging]=$(($(date +%s) - t0))
	out=$(tr -d '\r' < "$log.out")
	p=$(grep -c '^SUITE: PASS ' <<<"$out")
	f=$(grep -c '^SUITE: FAIL ' <<<"$out")
	pass=$((pass + p)); fail=$((fail + f))
	while read -r name; do failed+=("paging$paging:$name"); done < \
		<(sed -n 's/^SUITE: FAIL \([^ ]*\).*/\1/p' <<<"$out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		fail=$((fail + 1)); failed+=("paging$paging:vm-run")
	fi
	if ! grep -q '^SUITE: [0-9]* passed' <<<"$out"; then
		echo "debug VM suite in $paging-level paging did not finish"
		[ "$rc" -ne 0 ] || { fail=$((fail + 1)); failed+=("paging$paging:unfinished"); }
	fi
	reports "$log" > "$OUT/reports-paging$paging.txt"
done

if [ "$CRASH_ROUNDS" -gt 0 ]; then
	echo "== crash loop on the debug kernel: $CRASH_ROUNDS rounds (log: $OUT/crash/loop.log)"
	mkdir -p "$OUT/crash"
	cva=()
	for a in "${VMARGS[@]}" --timeout "$TEST_TIMEOUT"; do cva+=(--vm-arg "$a"); done
	t0=$(date +%s)
	if tests/crash/crash-loop.sh --rounds "$CRASH_ROUNDS" --workdir "$OUT/crash" \
		--writer tests/crash/save-writer.sh --checker tests/crash/save-checker.sh \
		--files build/tests/crash/files "${cva[@]}" > "$OUT/crash/loop.log" 2>&1; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1)); failed+=("crash-loop")
	fi
	took[crash]=$(($(date +%s) - t0))
	grep -E '^(ok|not ok) |^# [0-9]+ of |^crash-loop:' "$OUT/crash/loop.log"
	for l in "$OUT"/crash/logs/*.log; do
		[ -f "$l" ] && reports "$l" | sed "s|^|${l##*/}: |"
	done > "$OUT/reports-crash.txt"
fi

echo
echo "== kernel reports (build/debug-suite/reports-*.txt)"
for r in "$OUT"/reports-*.txt; do
	[ -f "$r" ] || continue
	if [ -s "$r" ]; then echo "-- $r:"; head -n 300 "$r"; else echo "-- $r: none"; fi
done
echo "== times: kernel build ${DK_BUILD_SECONDS}s (cached builds are reused)$(for k in "${!took[@]}"; do printf ', %s %ss' "$k" "${took[$k]}"; done), total $(($(date +%s) - t_start))s"
[ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
