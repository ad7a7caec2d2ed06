#!/bin/sh
# Runs inside the guest (vm/run): every test program in /test/files, one
# after the other.  After each, the module's totals in /sys/kernel/morsel
# must be back to their value before it (tests remove what they create).
# Prints "SUITE: PASS|FAIL name" per program and ends with
# "SUITE: N passed, M failed".
cd /test/files || exit 1
pass=0; fail=0
counters() { cat /sys/kernel/morsel/morsels /sys/kernel/morsel/data_pages \
	/sys/kernel/morsel/table_pages /sys/kernel/morsel/links \
	/sys/kernel/morsel/mappers | tr '\n' ' '; }
only="$*"
for t in test_*; do
	[ -x "$t" ] || continue
	if [ -n "$only" ]; then
		case " $only " in *" $t "*) ;; *) continue ;; esac
	fi
	before=$(counters)
	echo "SUITE: run $t"
	timeout 300 "./$t"
	rc=$?
	after=$(counters)
	i=0
	while [ "$after" != "$before" ] && [ $i -lt 20 ]; do
		sleep 0.1; after=$(counters); i=$((i + 1))
	done
	if [ "$after" != "$before" ]; then
		echo "SUITE: $t changed the totals (morsels data tables links mappers): before [$before] after [$after]"
		rc=1
	fi
	if [ $rc -eq 0 ]; then
		pass=$((pass + 1)); echo "SUITE: PASS $t"
	else
		fail=$((fail + 1)); echo "SUITE: FAIL $t (exit $rc)"
	fi
done
echo "SUITE: $pass passed, $fail failed"
[ $fail -eq 0 ]
