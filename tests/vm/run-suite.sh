#!/bin/sh
# Runs inside the guest (vm/run): every test program in /test/files, one
# after the other, and reports in TAP 13:
#   TAP version 13
#   # run: test_a              then test_a's own output, each line after "# "
#   ok 1 - test_a              exit 0
#   not ok 2 - test_b # exit 1
#   ok 3 - test_kvm # SKIP no kvm modules ...   exit 4 (kselftest's KSFT_SKIP)
#   1..3
#   # 2 passed (1 skipped), 1 failed
# After each program the module's totals in /sys/kernel/morsel must be
# back to their value before it (tests remove what they create); if not,
# the program fails.  Arguments: only the programs named.
#
# The "SUITE: PASS|FAIL name" lines (a skip is a PASS) and the last line,
# "SUITE: N passed, M failed", are not TAP: scripts/test-debug.sh reads
# them (scripts/test.sh reads the TAP lines).  scripts/test-debug.sh also
# replaces "timeout 300 " below.
cd /test/files || exit 1
n=0; pass=0; fail=0; skip=0
counters() { cat /sys/kernel/morsel/morsels /sys/kernel/morsel/data_pages \
	/sys/kernel/morsel/table_pages /sys/kernel/morsel/links \
	/sys/kernel/morsel/mappers | tr '\n' ' '; }
only="$*"
why=/tmp/run-suite.skip
echo "TAP version 13"
for t in test_*; do
	[ -x "$t" ] || continue
	if [ -n "$only" ]; then
		case " $only " in *" $t "*) ;; *) continue ;; esac
	fi
	n=$((n + 1))
	before=$(counters)
	echo "# run: $t"
	# The program's output as TAP comments, through a FIFO of its own
	# rather than a pipe: a process it leaves behind holding its stdout
	# cannot stall the suite.  awk notes the reason of a whole-program
	# skip.
	out=/tmp/run-suite.$n.fifo
	rm -f "$why" "$out"
	mkfifo "$out" || exit 1
	awk -v why="$why" '{ print "# " $0; fflush() }
		/^1\.\.0 # SKIP/ { r = $0; sub(/^1\.\.0 # SKIP */, "", r)
			print r > why; close(why) }' < "$out" &
	reader=$!
	timeout 300 "./$t" > "$out" 2>&1
	rc=$?
	i=0
	while kill -0 "$reader" 2>/dev/null && [ $i -lt 200 ]; do
		sleep 0.01; i=$((i + 1))
	done
	[ $i -lt 200 ] || echo "# $t left a process behind that holds its output"
	rm -f "$out"
	after=$(counters)
	i=0
	while [ "$after" != "$before" ] && [ $i -lt 20 ]; do
		sleep 0.1; after=$(counters); i=$((i + 1))
	done
	if [ "$after" != "$before" ]; then
		echo "# $t changed the totals (morsels data tables links mappers): before [$before] after [$after]"
		rc=1
	fi
	case $rc in
	0)	pass=$((pass + 1)); echo "ok $n - $t"
		echo "SUITE: PASS $t" ;;
	4)	pass=$((pass + 1)); skip=$((skip + 1))
		r=$(cat "$why" 2>/dev/null)
		echo "ok $n - $t # SKIP${r:+ $r}"
		echo "SUITE: PASS $t" ;;
	*)	fail=$((fail + 1)); echo "not ok $n - $t # exit $rc"
		echo "SUITE: FAIL $t (exit $rc)" ;;
	esac
done
rm -f "$why"
echo "1..$n"
if [ $skip -gt 0 ]; then
	echo "# $pass passed ($skip skipped), $fail failed"
else
	echo "# $pass passed, $fail failed"
fi
echo "SUITE: $pass passed, $fail failed"
[ $fail -eq 0 ]
