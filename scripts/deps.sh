#!/usr/bin/env bash
# scripts/deps.sh - install everything the morsel project needs (Debian 12).
#
# Idempotent: when every package is already installed it only runs
# dpkg-query and exits. Otherwise it runs `apt-get update` once and installs
# the missing packages without recommends. Must run as root (or via sudo).
set -euo pipefail

# --- package list -----------------------------------------------------------
# linux-headers-6.12-amd64 is a meta package: it pulls the versioned headers,
# which depend on the exactly matching linux-image (gives /boot/vmlinuz-X).
PACKAGES=(
    build-essential gcc make libc6-dev binutils coreutils kmod
    linux-headers-6.12-amd64 linux-source-6.12
    qemu-system-x86 busybox-static cpio xz-utils
    # make fuzz: clang 14 with -fsanitize=fuzzer. libFuzzer and the clang
    # sanitizer runtimes are in libclang-rt-14-dev, which clang only
    # recommends; llvm gives llvm-symbolizer for readable reports.
    clang libclang-rt-14-dev llvm
    # xfstests' fsx and fsstress (tests/vm/test_fsx.sh), built from
    # ../shared/tools/xfstests: they link libaio and liburing statically.
    libaio-dev liburing-dev xfslibs-dev
    # SQLite and LMDB as real users of morsel memory (tests/vm/test_sqlite.c,
    # test_lmdb.c; linked statically)
    libsqlite3-dev liblmdb-dev
    # mkfs.ext4 for the suite's disk (O_DIRECT in tests/vm/test_gup.c)
    # and the crash loop's.
    e2fsprogs
    # python3: scripts/opfuzz-kcov.sh maps KCOV PCs to lines (make fuzz-ops-kcov)
    python3
    # rsync for tests/vm/test_roundtrip.sh (copied into the guest with
    # its libraries: the guest has only busybox).
    rsync
)

# --- find what is missing ---------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    echo "deps.sh: all ${#PACKAGES[@]} packages present"
    exit 0
fi

# --- install ----------------------------------------------------------------
SUDO=()
if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "deps.sh: need root to install: ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
echo "deps.sh: installing: ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"

# --- check -------------------------------------------------------------------
# -fsanitize=fuzzer must link (a missing runtime only shows up here).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)' \
    '{ (void)d; (void)n; return 0; }' > "$tmp/f.c"
clang -fsanitize=fuzzer,address,undefined -o "$tmp/f" "$tmp/f.c" ||
    { echo "deps.sh: clang -fsanitize=fuzzer does not link" >&2; exit 1; }
echo "deps.sh: done"
