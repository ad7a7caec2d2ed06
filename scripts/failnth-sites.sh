#!/usr/bin/env bash
# make failnth-sites: which of the module's allocation sites
# (scripts/alloc-sites.sh) a test_failnth walk failed (issue 13, item 3).
#
# Runs tests/vm/test_failnth on the debug kernel (scripts/test-debug.sh,
# one paging mode: MORSEL_DEBUG_PAGING, default 4) with
# "morsel_failnth_sites" on the kernel command line: the test then turns
# on the fault attributes' stack output and prints, for each injected
# failure, the morsel frames of its stack ("failnth-site:" lines).  Each
# frame is mapped to its kmod/ lines, inline chain included, with
# scripts/faddr2line of the kernel source and the module test-debug.sh
# built (build/debug-kmod/kmod/morsel.ko, -g); return addresses are looked
# up one byte back, at the call.  A site counts as failed when one of its
# failures' chains passes through its line: the failure was below that
# call.  Prints a markdown table (site, reach, failed by which walks, the
# errnos the walks returned), then the failures whose innermost morsel
# line is no listed site, and a summary; exit status 1 if a site a user
# can reach was not failed.
#
#   scripts/failnth-sites.sh                  run, then report
#   scripts/failnth-sites.sh --log FILE       report on a run's console log
#                                             (build/debug-suite/suite-paging4.log)
#   MORSEL_DEBUG_KERNEL_DIR, MORSEL_DEBUG_*   as for scripts/test-debug.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LOG=
case "${1:-}" in
	--log) LOG=${2:?--log FILE}; [ -f "$LOG" ] || { echo "failnth-sites: no $LOG"; exit 2; } ;;
	"") ;;
	*) echo "usage: scripts/failnth-sites.sh [--log CONSOLE-LOG]"; exit 2 ;;
esac
OUT=build/failnth-sites
mkdir -p "$OUT"

if [ -z "$LOG" ]; then
	paging=${MORSEL_DEBUG_PAGING:-4}
	paging=${paging%% *}
	MORSEL_TESTS=test_failnth MORSEL_DEBUG_PAGING=$paging \
	MORSEL_DEBUG_TEST_TIMEOUT=${MORSEL_DEBUG_TEST_TIMEOUT:-3600} \
	MORSEL_DEBUG_APPEND="${MORSEL_DEBUG_APPEND:+$MORSEL_DEBUG_APPEND }morsel_failnth_sites" \
		scripts/test-debug.sh > "$OUT/test-debug.out" 2>&1
	rc=$?
	grep -E '^(# (ok|not ok|failnth-site: .* -$)|ok |not ok |SUITE: |vm/run: |[0-9]+ passed)' "$OUT/test-debug.out" |
		grep -v 'failnth-site' || true
	echo "(test-debug exit $rc; its output: $OUT/test-debug.out)"
	LOG=build/debug-suite/suite-paging$paging.log
fi

eval "$(scripts/debug-kernel.sh --print-env)"
FADDR2LINE=$(ls "$(dirname "$DK_OBJ")"/src/linux-source-*/scripts/faddr2line 2>/dev/null | head -n1)
KO=build/debug-kmod/kmod/morsel.ko
[ -x "$FADDR2LINE" ] || { echo "failnth-sites: no scripts/faddr2line in the debug kernel's source"; exit 2; }
[ -f "$KO" ] || { echo "failnth-sites: no $KO (scripts/test-debug.sh builds it)"; exit 2; }

# The walks' lines: PHASE n=N err=E KIND CALLEE FRAME...
# A kernel message the console put at the end of one is cut off (its
# frames before it are whole); a line a message broke elsewhere is
# dropped: the frames must be whole.
tr -d '\r' < "$LOG" | sed -n 's/^.*failnth-site: //p' |
	sed -E 's/\[ *[0-9]+\.[0-9]+\] .*$//' |
	grep -E '^[a-z/-]+ n=[0-9]+ err=-?[0-9]+ (slab|page|silent) [A-Za-z0-9_.-]+( [A-Za-z0-9_.]+\+0x[0-9a-f]+/0x[0-9a-f]+)*( -)?$' \
	> "$OUT/failures.txt"
[ -s "$OUT/failures.txt" ] || { echo "failnth-sites: no failnth-site lines in $LOG"; exit 2; }

# Each frame, one byte back (the call, not the return address), to its
# chain of kmod/ lines, innermost first: FRAME CHAIN(a,b,c).
awk '{ for (i = 6; i <= NF; i++) if ($i != "-") print $i }' "$OUT/failures.txt" |
	sort -u > "$OUT/frames.txt"
: > "$OUT/chains.txt"
while read -r frame; do
	fn=${frame%%+*} off=${frame#*+}; off=${off%%/*}
	back=$(printf '%s+0x%x' "$fn" $((off - 1)))
	chain=$("$FADDR2LINE" "$KO" "$back" 2>/dev/null |
		grep -oE '[A-Za-z0-9_]+ at [^ ]*/kmod/[a-z_]+\.c:[0-9]+' |
		sed -E 's|^([A-Za-z0-9_]+) at .*/kmod/|kmod/|' | paste -sd, -)
	echo "$frame ${chain:--}"
done < "$OUT/frames.txt" > "$OUT/chains.txt"

scripts/alloc-sites.sh > "$OUT/sites.txt"

# Join: per failure its whole chain; per site the walks and errnos.
awk '
BEGIN {
	n = split("EPERM ENOENT ESRCH EINTR EIO ENXIO E2BIG ENOEXEC EBADF ECHILD EAGAIN ENOMEM EACCES EFAULT ENOTBLK EBUSY EEXIST EXDEV ENODEV ENOTDIR EISDIR EINVAL ENFILE EMFILE ENOTTY ETXTBSY EFBIG ENOSPC", names, " ")
	for (i = 1; i <= n; i++) ename[i] = names[i]
	ename[61] = "ENODATA"; ename[74] = "EBADMSG"; ename[84] = "EILSEQ"
}
FILENAME == ARGV[1] { chain[$1] = $2; next }
FILENAME == ARGV[2] {
	split($0, f, ":")
	site = f[1] ":" f[2]
	sites[++ns] = site; sfn[site] = f[3]; scall[site] = f[4]
	r = $0; sub(/^[^:]*:[^:]*:[^:]*:[^:]*:/, "", r); sreach[site] = r
	listed[site] = 1
	next
}
{
	phase = $1; err = $3; sub(/^err=/, "", err); kind = $4; callee = $5
	all = ""
	for (i = 6; i <= NF; i++)
		if ($i != "-" && chain[$i] != "-" && chain[$i] != "")
			all = all (all == "" ? "" : ",") chain[$i]
	nfail++
	if (kind == "silent") { silent[phase]++; nsilent++; next }
	if (all == "") { kernel[phase]++; nkernel++; next }
	m = split(all, loc, ",")
	for (i = 1; i <= m; i++) {
		l = loc[i]
		if (!(l in listed) || seen[l, nfail]++) continue
		by[l] = by[l] (index(" " by[l] " ", " " phase " ") ? "" : (by[l] == "" ? "" : " ") phase)
		e = err == 0 ? "0" : (ename[-err] != "" ? ename[-err] : err)
		errs[l] = errs[l] (index(" " errs[l] " ", " " e " ") ? "" : (errs[l] == "" ? "" : " ") e)
		count[l]++
		if (i == 1) inner[l]++
	}
	first = loc[1]
	if (!(first in listed))
		unlisted[first " (" callee ", " phase ")"]++
}
END {
	print "| site | function | calls | reach | failed | by | returned |"
	print "| --- | --- | --- | --- | ---: | --- | --- |"
	for (i = 1; i <= ns; i++) {
		s = sites[i]
		user += sreach[s] == "user"
		if (count[s]) { failed++; ufailed += sreach[s] == "user" }
		else if (sreach[s] == "user") missing = missing " " s
		printf "| `%s` | `%s` | `%s` | %s | %s | %s | %s |\n", s, sfn[s], scall[s],
			sreach[s], count[s] ? count[s] " (" inner[s] + 0 " innermost)" : "**no**",
			by[s], errs[s]
	}
	print ""
	printf "%d injected failures: %d in the kernel only (no morsel frame)", nfail, nkernel
	for (p in kernel) printf " %s:%d", p, kernel[p]
	printf "; %d silent (__GFP_NOWARN, no stack)", nsilent
	for (p in silent) printf " %s:%d", p, silent[p]
	print ""
	for (u in unlisted) print "innermost morsel line that is no listed site: " u ": " unlisted[u]
	printf "%d sites, %d reachable by a user; %d failed at least once (%d of the reachable)\n",
		ns, user, failed, ufailed
	if (missing != "") print "not failed (reachable):" missing
	exit missing != ""
}' "$OUT/chains.txt" "$OUT/sites.txt" "$OUT/failures.txt" | tee "$OUT/table.md"
exit "${PIPESTATUS[0]}"
