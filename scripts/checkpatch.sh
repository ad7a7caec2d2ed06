#!/usr/bin/env bash
# Kernel coding style of kmod/ and the uAPI header, checked with
# checkpatch.pl from the linux-source-6.12 tarball (extracted once into
# build/checkpatch/).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TAR=$(ls /usr/src/linux-source-6.12*.tar.xz 2>/dev/null | head -n1 || true)
[ -n "$TAR" ] || { echo "checkpatch: linux-source-6.12 not installed; run scripts/deps.sh" >&2; exit 1; }
DIR="$ROOT/build/checkpatch"
if [ ! -x "$DIR/scripts/checkpatch.pl" ]; then
	mkdir -p "$DIR"
	tar xf "$TAR" -C "$DIR" --strip-components=1 --wildcards \
		'*/scripts/checkpatch.pl' '*/scripts/spelling.txt' \
		'*/scripts/const_structs.checkpatch' '*/scripts/typedefsfile' \
		2>/dev/null || true
	[ -x "$DIR/scripts/checkpatch.pl" ] ||
		{ echo "checkpatch: could not extract checkpatch.pl from $TAR" >&2; exit 1; }
fi
cd "$ROOT"
# --strict CHECKs are printed; errors and warnings fail the check.
out=$("$DIR/scripts/checkpatch.pl" --no-tree --strict --terse --show-types \
	--ignore FILE_PATH_CHANGES,SPDX_LICENSE_TAG \
	-f $(ls kmod/*.c kmod/*.h | grep -v "\.mod\.c$") include/uapi/linux/morsel.h) || true
printf '%s\n' "$out"
! grep -qE ': (ERROR|WARNING):' <<<"$out"
