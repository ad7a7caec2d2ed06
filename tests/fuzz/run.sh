#!/usr/bin/env bash
# Run the image fuzzer (make fuzz builds it) for SECONDS, starting from the
# generated seeds and the corpus kept by earlier runs in build/fuzz/corpus.
# Exits non-zero on any crash, leak, sanitizer report, timeout (an input
# taking over 10 s) or memory blow-up; the input that did it is saved as
# build/fuzz/crash-* (timeout-*, leak-*, oom-*): replay it with
#   build/fuzz/fuzz_image build/fuzz/crash-...
#   tests/fuzz/run.sh [SECONDS [libFuzzer options...]]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
B=build/fuzz
secs=${1:-30}
shift || true
for f in "$B/fuzz_image" "$B/seeds/.stamp"; do
	[ -e "$f" ] || { echo "run.sh: $f missing: run make fuzz" >&2; exit 1; }
done
mkdir -p "$B/corpus"
# -max_len: room for the largest seed plus some growth.
exec "$B/fuzz_image" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
	-max_len=65536 -print_final_stats=1 -artifact_prefix="$B/" "$@" \
	"$B/corpus" "$B/seeds"
