# Shared by the peer tests (test_fsx*.sh, test_fsstress.sh), sourced in
# the guest from /test/files: xfstests' fsx and fsstress (unmodified,
# built by the Makefile from the shared reference copy) on morselfs, with
# the same runs on tmpfs as the reference.  morselfs must pass every case
# that tmpfs passes (docs/semantics.md names the differences); a case that
# fails on tmpfs too is reported as a skip, not held against morselfs.
cd /test/files || exit 1
if [ ! -x ./fsx ] || [ ! -x ./fsstress ]; then
	echo "1..0 # SKIP fsx/fsstress not built (no ../shared/tools/xfstests)"
	exit 4
fi
echo "TAP version 13"
n=0; failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }

T=/tmp/peer-tmpfs
M=/dev/morsel/peer
LOGS=/tmp/peer-logs
mkdir -p $T $M $LOGS
grep -q " $T " /proc/mounts || mount -t tmpfs -o size=3g none $T ||
	{ echo "Bail out! tmpfs mount"; exit 1; }
# Killed by the suite's timeout: leave no object behind for the next test.
trap 'echo "Bail out! killed (the suite timeout?)"; rm -rf $M $T/*; exit 1' TERM INT

# verdict WHAT TMPFS MORSELFS: the two TAP lines of one case.
verdict() {
	if [ "$2" = pass ]; then ok "$1 on tmpfs"; else
		ok "$1 on tmpfs # SKIP fails on tmpfs"; fi
	if [ "$3" = pass ]; then ok "$1 on morselfs"
	elif [ "$2" = fail ]; then ok "$1 on morselfs # SKIP fails on tmpfs too"
	else notok "$1 on morselfs, which passes on tmpfs"; fi
}

# run_fsx NAME DIR ARGS...: fsx on DIR/NAME; 0 if it passed.
run_fsx() {
	name=$1; dir=$2; shift 2
	rm -f $dir/$name
	t0=$(date +%s)
	if ./fsx -q -P $LOGS "$@" $dir/$name > $LOGS/$name.out 2>&1; then
		echo "# fsx $name on $dir: passed in $(( $(date +%s) - t0 )) s"
		rm -f $dir/$name
		return 0
	fi
	echo "# --- fsx $* on $dir failed:"
	tail -n 40 $LOGS/$name.out | sed 's/^/#   /'
	rm -f $dir/$name
	return 1
}

# case_fsx NAME ARGS...: the same fsx run on tmpfs, then morselfs.
case_fsx() {
	name=$1; shift
	if run_fsx $name $T "$@"; then t=pass; else t=fail; fi
	if run_fsx $name $M "$@"; then m=pass; else m=fail; fi
	verdict "fsx $name ($*)" $t $m
}

# finish: the plan and the exit status.
finish() {
	umount $T 2>/dev/null
	rmdir $M 2>/dev/null
	echo "1..$n"
	echo "# $((n - failed)) passed, $failed failed"
	[ $failed -eq 0 ]
}
