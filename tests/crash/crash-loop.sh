#!/usr/bin/env bash
# tests/crash/crash-loop.sh - crash-consistency loop for "save to an image
# file on disk": kill the VM at random moments while a WRITER saves, boot
# again, let a CHECKER verify what is on the disk. Runs on the host.
#
# Usage: tests/crash/crash-loop.sh [options] [ROUNDS]
#
#   --rounds N         rounds to run (default 20; a bare number works too)
#   --long             300 rounds
#   --writer PROG      guest WRITER (default tests/crash/dummy-writer.sh)
#   --checker PROG     guest CHECKER (default tests/crash/dummy-checker.sh)
#   --writer-arg ARG   extra argument for WRITER (repeatable)
#   --checker-arg ARG  extra argument for CHECKER (repeatable)
#   --files DIR        copied into /test/files/ of both runs (with the
#                      crash-loop.durable file described below)
#   --min SECS         earliest kill, after the writer starts (default 0.5)
#   --max SECS         latest kill (default 4)
#   --seed N           seed for the kill points (default: random, printed)
#   --workdir DIR      disk image and logs (default build/crash)
#   --disk-size SIZE   size of the sparse ext4 image (default 512M)
#   --keep-disk        reuse WORKDIR/disk.img instead of a fresh mkfs.ext4
#   --no-fsck          skip the host's e2fsck -fn after each checker run
#   --vm-arg ARG       extra vm/run option (repeatable), e.g.
#                      --vm-arg --cpus --vm-arg 1
#
# Each round:
#   1. vm/run --disk IMG --kill-after D -- WRITER ROUND LAST [writer args]
#      with D uniform in [--min, --max]: QEMU is SIGKILLed D seconds after
#      the WRITER started (vm/run exit status 9). A WRITER that finishes by
#      itself first (status 0) is fine too; anything else fails the round.
#   2. LAST := the largest N over every "DURABLE N" line (alone on a
#      complete console line) any WRITER printed so far. Every complete
#      console line that starts with "DURABLE " is also appended, prefixed
#      with the round number ("3 DURABLE full 12"), to crash-loop.durable,
#      which both programs find in /test/files/ (for WRITER/CHECKER pairs
#      with a richer protocol than one number; a #!/bin/sh CHECKER can
#      grep "^$ROUND DURABLE " /test/files/crash-loop.durable).
#   3. vm/run --disk IMG -- CHECKER ROUND LAST [checker args]; must exit 0.
#   4. e2fsck -fn IMG on the host must find the file system clean.
# The image persists across rounds, so each round starts from what the
# previous crash left. The loop stops at the first failing round and keeps
# the image and the logs (WORKDIR/logs/round-N-{writer,checker}.log).
#
# WRITER contract: save repeatedly to /mnt/disk; print "DURABLE N" (on its
# own line, stdout) only once generation N is durable (fsync'd, renamed,
# directory fsync'd, ...). CHECKER contract: exit 0 iff the disk holds a
# consistent state at least as new as generation LAST.
#
# Output is TAP ("ok 3 - round 3: killed after 1.37 s, checker passed ..."),
# then "# ..." summary lines and "crash-loop: N passed, M failed".
# Exit status 0 when every round passed, 1 otherwise, 2 on usage errors.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/crash"

ROUNDS=20
WRITER="$HERE/dummy-writer.sh"
CHECKER="$HERE/dummy-checker.sh"
WRITER_ARGS=()
CHECKER_ARGS=()
FILES=""
MIN=0.5
MAX=4
SEED=""
WORKDIR="$ROOT/build/crash"
DISK_SIZE=512M
KEEP_DISK=no
FSCK=yes
VM_ARGS=()

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2; }
die() { echo "crash-loop: $*" >&2; exit 2; }

while (($#)); do
    case "$1" in
        --rounds|--writer|--checker|--writer-arg|--checker-arg|--files|--min|--max|--seed|--workdir|--disk-size|--vm-arg)
            (($# >= 2)) || die "$1 needs a value"
            case "$1" in
                --rounds) ROUNDS=$2 ;;
                --writer) WRITER=$2 ;;
                --checker) CHECKER=$2 ;;
                --writer-arg) WRITER_ARGS+=("$2") ;;
                --checker-arg) CHECKER_ARGS+=("$2") ;;
                --files) FILES=$2 ;;
                --min) MIN=$2 ;;
                --max) MAX=$2 ;;
                --seed) SEED=$2 ;;
                --workdir) WORKDIR=$2 ;;
                --disk-size) DISK_SIZE=$2 ;;
                --vm-arg) VM_ARGS+=("$2") ;;
            esac
            shift 2 ;;
        --long) ROUNDS=300; shift ;;
        --keep-disk) KEEP_DISK=yes; shift ;;
        --no-fsck) FSCK=no; shift ;;
        -h|--help) usage ;;
        [0-9]*) ROUNDS=$1; shift ;;
        *) echo "crash-loop: unknown argument $1" >&2; usage ;;
    esac
done

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer, got '$ROUNDS'"
num='^([0-9]+(\.[0-9]*)?|\.[0-9]+)$'
[[ "$MIN" =~ $num && "$MAX" =~ $num ]] || die "--min/--max must be seconds like 0.5"
awk -v a="$MIN" -v b="$MAX" 'BEGIN { exit !(a > 0 && a <= b) }' ||
    die "need 0 < --min <= --max (got $MIN, $MAX)"
[[ -z "$SEED" || "$SEED" =~ ^[0-9]+$ ]] || die "--seed must be a number"
[[ -f "$WRITER" ]] || die "WRITER $WRITER not found"
[[ -f "$CHECKER" ]] || die "CHECKER $CHECKER not found"
[[ -z "$FILES" || -d "$FILES" ]] || die "--files $FILES is not a directory"
for tool in mkfs.ext4 e2fsck truncate; do
    command -v "$tool" >/dev/null || die "$tool not found (package e2fsprogs / coreutils)"
done

mkdir -p "$WORKDIR/logs"
WORKDIR=$(cd "$WORKDIR" && pwd)
DISK="$WORKDIR/disk.img"
LOGS="$WORKDIR/logs"
rm -f "$LOGS"/round-*.log "$LOGS"/round-*.err

if [[ "$KEEP_DISK" == no || ! -f "$DISK" ]]; then
    rm -f "$DISK"
    truncate -s "$DISK_SIZE" "$DISK"
    mkfs.ext4 -F -q "$DISK"
fi

# Kill points: uniform in [MIN, MAX], from bash's RANDOM seeded once.
SEED=${SEED:-$((SRANDOM % 1000000))}
RANDOM=$SEED
kill_point() {
    awk -v r="$RANDOM" -v s="$RANDOM" -v lo="$MIN" -v hi="$MAX" \
        'BEGIN { printf "%.2f", lo + (hi - lo) * (r * 32768 + s) / (32768 * 32768 - 1) }'
}

# The complete console lines of LOG that start with "DURABLE ". A line cut
# short by the kill (no newline at the end of the log) does not count.
durable_lines() {
    local log=$1
    tr -d '\r' < "$log" |
        { if [[ -n "$(tail -c 1 "$log")" ]]; then sed '$d'; else cat; fi; } |
        grep -E '^DURABLE ' || true
}
# The largest N of those lines that read "DURABLE N" (empty if none).
durable_max() {
    sed -n 's/^DURABLE \([0-9][0-9]*\)$/\1/p' | sort -n | tail -n 1
}

# /test/files/ of every run: --files DIR plus crash-loop.durable.
STAGE="$WORKDIR/files"
DURABLE_ALL="$WORKDIR/crash-loop.durable"
: > "$DURABLE_ALL"
stage_files() {
    rm -rf "$STAGE"
    mkdir -p "$STAGE"
    [[ -z "$FILES" ]] || cp -a "$FILES/." "$STAGE/"
    cp "$DURABLE_ALL" "$STAGE/crash-loop.durable"
}
# vm/run's "vm/run: reason" lines and the guest's CHECK lines, as TAP comments.
diag() {
    local f
    for f in "$@"; do
        [[ -f "$f" ]] || continue
        tr -d '\r' < "$f" | grep -E '^(vm/run: |CHECK|dummy-)' | grep -v 'vm/run: booting' |
            sed 's/^/#   /' || true
    done
}

VMRUN="$ROOT/vm/run"
echo "# crash-loop: $ROUNDS rounds, writer $(basename "$WRITER"), checker $(basename "$CHECKER"), kills at ${MIN}..${MAX} s, seed $SEED"
echo "# disk $DISK ($DISK_SIZE ext4), logs in $LOGS"
echo "1..$ROUNDS"

last=0          # largest generation any writer reported durable
passed=0
failed=0
kmin="" kmax=""
t_start=$(date +%s.%N)
for ((round = 1; round <= ROUNDS; round++)); do
    t_round=$(date +%s.%N)
    delay=$(kill_point)
    wlog="$LOGS/round-$round-writer.log"
    clog="$LOGS/round-$round-checker.log"
    files=(--files "$STAGE")
    stage_files

    set +e
    "$VMRUN" --disk "$DISK" --kill-after "$delay" --timeout 300 --keep-log "$wlog" \
        "${files[@]}" "${VM_ARGS[@]}" -- \
        "$WRITER" "$round" "$last" "${WRITER_ARGS[@]}" >/dev/null 2>"$wlog.err"
    wrc=$?
    set -e
    how=""
    killed=""
    case "$wrc" in
        9) killed=$(sed -n 's/^vm\/run: killed QEMU (SIGKILL) \([0-9.]*\)s after.*/\1/p' "$wlog.err")
           killed=${killed:-$delay}
           how="killed after $(printf "%.2f" "$killed") s" ;;
        0) how="writer finished before the kill point ($delay s)" ;;
        *) echo "not ok $round - round $round: writer run failed (vm/run exit $wrc, kill point $delay s)"
           diag "$wlog.err" "$wlog"
           echo "#   log: $wlog"
           failed=$((failed + 1))
           break ;;
    esac
    if [[ -n "$killed" ]]; then
        kmin=$(awk -v a="${kmin:-$killed}" -v b="$killed" 'BEGIN { print (b < a ? b : a) }')
        kmax=$(awk -v a="${kmax:-$killed}" -v b="$killed" 'BEGIN { print (b > a ? b : a) }')
    fi
    lines=$(durable_lines "$wlog")
    n=0
    if [[ -n "$lines" ]]; then
        n=$(wc -l <<<"$lines")
        sed "s/^/$round /" <<<"$lines" >> "$DURABLE_ALL"
    fi
    m=$(durable_max <<<"$lines")
    if [[ -n "$m" ]] && ((m > last)); then last=$m; fi

    stage_files
    set +e
    "$VMRUN" --disk "$DISK" --timeout 300 --keep-log "$clog" \
        "${files[@]}" "${VM_ARGS[@]}" -- \
        "$CHECKER" "$round" "$last" "${CHECKER_ARGS[@]}" >/dev/null 2>"$clog.err"
    crc=$?
    set -e
    if ((crc != 0)); then
        echo "not ok $round - round $round: $how, $n saves reported durable (last durable $last), checker FAILED (vm/run exit $crc)"
        diag "$clog.err" "$clog"
        echo "#   logs: $wlog $clog"
        failed=$((failed + 1))
        break
    fi
    if [[ "$FSCK" == yes ]] && ! e2fsck -fn "$DISK" >"$LOGS/round-$round-fsck.log" 2>&1; then
        echo "not ok $round - round $round: $how, checker passed, but e2fsck -fn finds the file system damaged"
        sed 's/^/#   /' "$LOGS/round-$round-fsck.log" | head -n 20
        failed=$((failed + 1))
        break
    fi
    secs=$(awk -v a="$t_round" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "ok $round - round $round: $how, checker passed ($n saves reported durable this round, last durable $last; ${secs} s)"
    passed=$((passed + 1))
done

total=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
ran=$((passed + failed))
per=$(awk -v t="$total" -v n="$ran" 'BEGIN { printf "%.1f", n ? t / n : 0 }')
echo "# $ran of $ROUNDS rounds in ${total} s (${per} s per round); kills ${kmin:-?}..${kmax:-?} s after the writer started; last durable generation $last; seed $SEED"
if ((failed)); then
    echo "# FAILED: disk image and logs kept in $WORKDIR (rerun with --seed $SEED for the same kill points)"
fi
echo "crash-loop: $passed passed, $failed failed"
((failed == 0 && passed == ROUNDS))
