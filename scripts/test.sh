#!/usr/bin/env bash
# make test: host unit tests (sanitizers on), then the VM suite once in
# 5-level and once in 4-level paging.  Each test program is one test per
# run (a skipped one, exit 4, counts as passed and is listed as skipped);
# a kernel BUG/WARNING/leak seen by vm/run fails the suite run.
# The image fuzzer (make fuzz) runs for 30 s after the host tests and counts
# as one test, host:fuzz_image; the crash loop of saves (tests/crash, 20
# kills) runs last and counts as one test, crash-loop.  Ends with one line "N passed, M failed".
#   MORSEL_TESTS="test_a test_b" scripts/test.sh   runs only those VM tests
#   MORSEL_FUZZ_SECS=120 scripts/test.sh            fuzzes longer
#   MORSEL_CRASH_ROUNDS=300 scripts/test.sh         longer crash loop (0: none)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# One stream, in order: the summary must be the last line anyone reads.
exec 2>&1
pass=0; fail=0; failed=(); skipped=(); why_lines=()

for t in build/tests/host/test_*; do
	[ -x "$t" ] || continue
	echo "== host: $t"
	if "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); failed+=("host:${t##*/}"); fi
done

secs=${MORSEL_FUZZ_SECS:-30}
echo "== host: fuzz_image, ${secs} s (log: build/fuzz/test.log)"
mkdir -p build/fuzz
if tests/fuzz/run.sh "$secs" > build/fuzz/test.log 2>&1; then
	pass=$((pass + 1))
	grep -E '^(Done |stat::(number_of_executed_units|average_exec_per_sec))' build/fuzz/test.log
else
	fail=$((fail + 1)); failed+=("host:fuzz_image")
	tail -n 60 build/fuzz/test.log
fi

mkdir -p build/vm
for paging in 5 4; do
	log="build/vm/suite-paging$paging.log"
	# A fresh ext4 disk at /mnt/disk in the guest: O_DIRECT to and from
	# morsel memory needs a block device under the file (test_gup).
	disk="build/vm/suite-disk.img"
	rm -f "$disk" && truncate -s 1G "$disk" && mkfs.ext4 -F -q "$disk"
	echo "== VM suite, $paging-level paging (log: $log)"
	./vm/run --paging "$paging" --mem 4G --timeout 1800 \
		--files build/tests/vm --keep-log "$log" --disk "$disk" \
		-- tests/vm/run-suite.sh ${MORSEL_TESTS:-} 2>&1 | tee "$log.out"
	rc=${PIPESTATUS[0]}
	# run-suite.sh speaks TAP: "ok N - test_x", "ok N - test_x # SKIP
	# ..." (exit 4: counted as passed, listed as skipped), "not ok N -
	# test_x ...", the plan "1..N" last; the programs' own lines come
	# after "# ".
	out=$(tr -d '\r' < "$log.out")
	p=$(grep -cE '^ok [0-9]+ - ' <<<"$out")
	f=$(grep -cE '^not ok [0-9]+ - ' <<<"$out")
	pass=$((pass + p)); fail=$((fail + f))
	while read -r name; do failed+=("paging$paging:$name"); done < \
		<(sed -nE 's/^not ok [0-9]+ - ([^ ]*).*/\1/p' <<<"$out")
	while read -r name; do skipped+=("paging$paging:$name"); done < \
		<(sed -nE 's/^ok [0-9]+ - ([^ ]*) # SKIP.*/\1/p' <<<"$out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		# The kernel log, the counters or the harness failed the run.
		fail=$((fail + 1)); failed+=("paging$paging:vm-run")
	fi
	if [ "$rc" -ne 0 ]; then
		# vm/run's reasons, and the kernel's report around the first bad
		# line, again next to the summary: CI keeps only the tail.
		while IFS= read -r l; do why_lines+=("paging$paging| $l"); done < \
			<(tr -d '\r' < "$log" | grep -m1 -B2 -A12 -E \
			'\[ *[0-9]+\.[0-9]+\].*(BUG|WARNING|Oops|bad p[mu]d|soft lockup|LOCKUP|rcu: INFO|stall|blocked for more than|hung_task|KASAN|UBSAN|leak |refcount_t)|MORSEL-HARNESS: (leak|rmmod failed|umount failed)')
		while IFS= read -r l; do why_lines+=("paging$paging: $l"); done < \
			<(grep -E '^vm/run: ' <<<"$out")
	fi
	if ! grep -qx "1\.\.$((p + f))" <<<"$out"; then
		echo "VM suite in $paging-level paging did not finish"
		[ "$rc" -ne 0 ] || { fail=$((fail + 1)); failed+=("paging$paging:unfinished"); }
	fi
done

# Races that need more CPUs than the suite's two (tests/vm/test_resize_race.c:
# a lock-order hang showed only on four).  One test.
if [ -z "${MORSEL_TESTS:-}" ]; then
	echo "== test_resize_race on 4 CPUs (log: build/vm/race4.log)"
	if ./vm/run --paging 5 --cpus 4 --mem 3G --timeout 600 \
		--keep-log build/vm/race4.log -- build/tests/vm/test_resize_race; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1)); failed+=("race4:test_resize_race")
	fi
fi

# Crash consistency of saves (issue 4): QEMU killed at random moments of a
# save loop on a disk, the VM booted again, every image checked.  One test.
rounds=${MORSEL_CRASH_ROUNDS:-20}
if [ "$rounds" -gt 0 ]; then
	echo "== crash loop: $rounds rounds (log: build/crash/loop.log)"
	mkdir -p build/crash
	if tests/crash/crash-loop.sh --rounds "$rounds" \
		--writer tests/crash/save-writer.sh \
		--checker tests/crash/save-checker.sh \
		--files build/tests/crash/files > build/crash/loop.log 2>&1; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1)); failed+=("crash-loop")
	fi
	grep -E '^(ok|not ok) |^# [0-9]+ of |^crash-loop:' build/crash/loop.log
fi

# The guest console may end without a newline: start a fresh line, so the
# summary stands alone on its own.
echo
if [ ${#why_lines[@]} -gt 0 ]; then
	echo "== why the VM runs failed (full logs in build/vm/)"
	printf '%s\n' "${why_lines[@]}"
fi
[ ${#skipped[@]} -eq 0 ] || echo "skipped (counted as passed): ${skipped[*]}"
[ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
