#!/usr/bin/env bash
# scripts/debug-kernel.sh - build (once) a debug kernel for the VM tests:
# Debian's own 6.12 source (package linux-source-6.12, the version of the
# stock image), x86_64_defconfig plus the fragment below (KASAN, lockdep,
# KFENCE, KCOV, fault injection, DEBUG_VM, ... and what the test guest
# needs), LOCALVERSION -morsel-debug, no module signing.  docs/debug-kernel.md
# explains the choices.
#
# Usage: scripts/debug-kernel.sh [--force] [--print-env]
#   --force      rebuild even when the stamp says the cache is current
#   --print-env  only print the env file of a finished build (exit 1 if none)
#
# Everything lives in $MORSEL_DEBUG_KERNEL_DIR (default build/debug-kernel,
# ignored by git; `make clean` removes it):
#   src/linux-source-6.12/   the unpacked source (read-only use)
#   obj/                     the O= build tree: .config, bzImage, and
#                            modules_prepare done (make -C obj M=... works)
#   modules/lib/modules/KVER modules_install output (stripped .ko, depmod)
#   bzImage, config          copies of the image and the final .config
#   env                      shell variables for scripts/test-debug.sh
#   stamp                    key of the finished build: source tarball hash,
#                            fragment, compiler; equal key = nothing to do
#   build.log                the last build's make output
#
# The build runs with `nice -n 10 make -j$MORSEL_DEBUG_KERNEL_JOBS` (default
# 2) and takes about an hour on a 2-core machine (docs/debug-kernel.md).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${MORSEL_DEBUG_KERNEL_DIR:-$ROOT/build/debug-kernel}
JOBS=${MORSEL_DEBUG_KERNEL_JOBS:-2}
TARBALL=/usr/src/linux-source-6.12.tar.xz
LOCALVERSION=-morsel-debug

FORCE=no
PRINT_ENV=no
for a in "$@"; do
    case "$a" in
        --force) FORCE=yes ;;
        --print-env) PRINT_ENV=yes ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "debug-kernel.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

say() { echo "debug-kernel.sh: $*" >&2; }
die() { say "$*"; exit 1; }

if [[ "$PRINT_ENV" == yes ]]; then
    [[ -f "$DIR/stamp" && -f "$DIR/env" ]] || die "no finished build in $DIR"
    cat "$DIR/env"
    exit 0
fi

# ---------------------------------------------------------------------------
# The configuration: x86_64_defconfig, then these (scripts/config syntax:
# NAME=y|m|n or NAME="string" or NAME=number), then olddefconfig.  The
# checks after olddefconfig make sure every y/m asked for here survived.
# ---------------------------------------------------------------------------
FRAGMENT=$(cat <<'EOF'
# --- identity: uname -r = 6.12.N-morsel-debug; unsigned, uncompressed modules
LOCALVERSION="-morsel-debug"
LOCALVERSION_AUTO=n
MODULES=y
MODULE_UNLOAD=y
MODULE_SIG=n
MODULE_COMPRESS=n
WERROR=n
# --- what the test guest needs (vm/run): built in, no modules to load
VIRTIO=y
VIRTIO_PCI=y
VIRTIO_BLK=y
BLK_DEV=y
EXT4_FS=y
DEVTMPFS=y
DEVTMPFS_MOUNT=y
TMPFS=y
DEBUG_FS=y
SERIAL_8250=y
SERIAL_8250_CONSOLE=y
BLK_DEV_INITRD=y
RD_GZIP=y
X86_5LEVEL=y
NUMA=y
UNIX=y
# --- memory management as in Debian's image, for the code paths morsel meets
MMU_NOTIFIER=y
TRANSPARENT_HUGEPAGE=y
TRANSPARENT_HUGEPAGE_ALWAYS=y
HUGETLBFS=y
MEMCG=y
CGROUPS=y
USERFAULTFD=y
KSM=y
MEMORY_HOTPLUG=y
# --- KVM as modules: tests/vm/test_kvm insmods irqbypass, kvm, ccp, kvm-amd
VIRTUALIZATION=y
KVM=m
KVM_AMD=m
KVM_AMD_SEV=y
KVM_INTEL=n
CRYPTO_HW=y
CRYPTO_DEV_CCP=y
CRYPTO_DEV_CCP_DD=m
CRYPTO_DEV_SP_CCP=y
CRYPTO_DEV_SP_PSP=y
CRYPTO_DEV_CCP_CRYPTO=n
CRYPTO_SHA1=y
AMD_IOMMU=y
# --- the detectors
DEBUG_KERNEL=y
KALLSYMS_ALL=y
KASAN=y
KASAN_GENERIC=y
KASAN_INLINE=y
KASAN_OUTLINE=n
KASAN_VMALLOC=y
KFENCE=y
KFENCE_NUM_OBJECTS=2047
KCOV=y
KCOV_INSTRUMENT_ALL=y
PROVE_LOCKING=y
DEBUG_LOCKDEP=y
PROVE_RCU=y
DEBUG_ATOMIC_SLEEP=y
DEBUG_VM=y
DEBUG_VM_PGTABLE=y
DEBUG_LIST=y
FAULT_INJECTION=y
FAILSLAB=y
FAIL_PAGE_ALLOC=y
FAULT_INJECTION_DEBUG_FS=y
DEBUG_KMEMLEAK=y
DEBUG_KMEMLEAK_DEFAULT_OFF=y
DEBUG_KMEMLEAK_AUTO_SCAN=n
DEBUG_KMEMLEAK_MEM_POOL_SIZE=40000
SOFTLOCKUP_DETECTOR=y
DETECT_HUNG_TASK=y
DEBUG_INFO_NONE=y
# --- not needed by the guest: less to build
DRM=n
SOUND=n
WIRELESS=n
WLAN=n
NETDEVICES=n
NETFILTER=n
INET=n
USB_SUPPORT=n
SCSI=n
ATA=n
MD=n
HID=n
NFS_FS=n
EOF
)

# The two changes to Debian's source (docs/debug-kernel.md):
# 1. mm/memory.c: export ptlock_alloc()/ptlock_free().  With lockdep
#    (DEBUG_SPINLOCK, DEBUG_LOCK_ALLOC) spinlock_t outgrows struct ptdesc's
#    word, so ALLOC_SPLIT_PTLOCKS is 1 and pagetable_{pte,pmd}_ctor/dtor()
#    (inline, used by kmod/pgtable.c) call these two, which 6.12 does not
#    export: the module would not link.  On the stock kernel the lock lives
#    in struct ptdesc and nothing is called.
# 2. arch/x86/kernel/cpu/common.c: identify_cpu() clears boot_cpu_data's
#    feature bits and reads them back from CPUID; pgtable_l5_enabled() is
#    X86_FEATURE_LA57 of boot_cpu_data, so an interrupt in that window
#    (early boot, 5-level paging) got "BUG: KASAN: wild-memory-access in
#    do_raw_spin_lock" for a direct-map address (3 boots in 8 once).  The
#    LA57 bit is kept, with interrupts off around the memset.
PATCH=$(cat <<'EOF'
--- a/mm/memory.c
+++ b/mm/memory.c
@@ -6995,11 +6995,13 @@ bool ptlock_alloc(struct ptdesc *ptdesc)
 	ptdesc->ptl = ptl;
 	return true;
 }
+EXPORT_SYMBOL_GPL(ptlock_alloc);
 
 void ptlock_free(struct ptdesc *ptdesc)
 {
 	kmem_cache_free(page_ptl_cachep, ptdesc->ptl);
 }
+EXPORT_SYMBOL_GPL(ptlock_free);
 #endif
 
 void vma_pgtable_walk_begin(struct vm_area_struct *vma)
--- a/arch/x86/kernel/cpu/common.c
+++ b/arch/x86/kernel/cpu/common.c
@@ -1896,7 +1896,22 @@
 	c->x86_virt_bits = 32;
 #endif
 	c->x86_cache_alignment = c->x86_clflush_size;
-	memset(&c->x86_capability, 0, sizeof(c->x86_capability));
+	/*
+	 * morsel debug kernel: pgtable_l5_enabled() tests X86_FEATURE_LA57
+	 * in boot_cpu_data.  An interrupt between this memset and
+	 * get_cpu_cap() would see 4-level paging, and KASAN reports every
+	 * direct-map access as a wild-memory-access.  Keep the bit.
+	 */
+	if (c == &boot_cpu_data && pgtable_l5_enabled()) {
+		unsigned long flags;
+
+		local_irq_save(flags);
+		memset(&c->x86_capability, 0, sizeof(c->x86_capability));
+		set_cpu_cap(c, X86_FEATURE_LA57);
+		local_irq_restore(flags);
+	} else {
+		memset(&c->x86_capability, 0, sizeof(c->x86_capability));
+	}
 #ifdef CONFIG_X86_VMX_FEATURE_NAMES
 	memset(&c->vmx_capability, 0, sizeof(c->vmx_capability));
 #endif
EOF
)

# Options that must be on in the final .config (y or m) and their values.
MUST=(
    "KASAN=y" "KASAN_GENERIC=y" "KASAN_INLINE=y" "KFENCE=y" "KCOV=y"
    "PROVE_LOCKING=y" "DEBUG_LOCKDEP=y" "PROVE_RCU=y" "DEBUG_ATOMIC_SLEEP=y"
    "DEBUG_VM=y" "DEBUG_LIST=y" "FAULT_INJECTION=y" "FAILSLAB=y"
    "FAIL_PAGE_ALLOC=y" "FAULT_INJECTION_DEBUG_FS=y" "DEBUG_KMEMLEAK=y"
    "VIRTIO_BLK=y" "EXT4_FS=y" "DEVTMPFS=y" "TMPFS=y" "DEBUG_FS=y"
    "SERIAL_8250_CONSOLE=y" "BLK_DEV_INITRD=y" "RD_GZIP=y" "X86_5LEVEL=y"
    "MMU_NOTIFIER=y" "TRANSPARENT_HUGEPAGE=y" "MEMCG=y" "USERFAULTFD=y"
    "KVM=m" "KVM_AMD=m" "CRYPTO_DEV_CCP_DD=m" "IRQ_BYPASS_MANAGER=m" "CRYPTO_SHA1=y"
    "MODULES=y" "MODULE_UNLOAD=y"
)
MUST_NOT=("MODULE_SIG" "LOCALVERSION_AUTO")

[[ -r "$TARBALL" ]] || {
    say "$TARBALL missing: installing linux-source-6.12"
    "$ROOT/scripts/deps.sh"
}
[[ -r "$TARBALL" ]] || die "$TARBALL still missing (package linux-source-6.12)"

# Build tools the kernel needs beyond scripts/deps.sh (Debian's archive).
need=()
for pkg in flex bison libelf-dev libssl-dev bc patch; do
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" == installed ]] || need+=("$pkg")
done
if ((${#need[@]})); then
    say "installing build tools: ${need[*]}"
    SUDO=()
    ((EUID == 0)) || SUDO=(sudo)
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${need[@]}"
fi

mkdir -p "$DIR"
exec 9> "$DIR/.lock"
flock 9 || die "cannot lock $DIR/.lock"

src_key=$(sha256sum "$TARBALL" | cut -d' ' -f1)
key=$( { echo "src $src_key"; printf '%s\n' "$FRAGMENT" "$PATCH"; gcc --version | head -n1;
         echo "layout v1"; } | sha256sum | cut -d' ' -f1)
if [[ "$FORCE" == no && -f "$DIR/stamp" && "$(cat "$DIR/stamp")" == "$key" &&
      -f "$DIR/bzImage" && -f "$DIR/env" ]]; then
    say "up to date ($(. "$DIR/env" && echo "$DK_RELEASE"), $DIR)"
    exit 0
fi
rm -f "$DIR/stamp"
t_begin=$(date +%s)

# --- source: unpack once per tarball, then PATCH -------------------------------
# A new tarball starts over (obj too).  A new PATCH alone re-unpacks the
# source and keeps obj: tar restores old mtimes, so the files either patch
# touches are touched to make kbuild rebuild them.
SRC="$DIR/src/linux-source-6.12"
patched_files() { sed -n 's|^+++ b/||p' <<<"$1" | cut -f1; }
old_patch=$(cat "$DIR/src/.patch" 2>/dev/null || true)
if [[ ! -f "$DIR/src/.stamp" || "$(cat "$DIR/src/.stamp")" != "$src_key" ||
      ! -f "$SRC/Makefile" || "$old_patch" != "$PATCH" ]]; then
    if [[ "$(cat "$DIR/src/.stamp" 2>/dev/null)" != "$src_key" ]]; then
        rm -rf "$DIR/obj"
    fi
    say "unpacking $TARBALL"
    rm -rf "$DIR/src"
    mkdir -p "$DIR/src"
    tar -C "$DIR/src" -xf "$TARBALL"
    [[ -f "$SRC/Makefile" ]] || die "$TARBALL did not unpack to linux-source-6.12/"
    patch -d "$SRC" -p1 --no-backup-if-mismatch <<<"$PATCH" >&2 ||
        die "the patch does not apply to $TARBALL"
    while read -r f; do
        [[ -z "$f" || ! -f "$SRC/$f" ]] || touch "$SRC/$f"
    done < <(patched_files "$old_patch"; patched_files "$PATCH")
    printf '%s\n' "$PATCH" > "$DIR/src/.patch"
    echo "$src_key" > "$DIR/src/.stamp"
fi

# --- configuration -------------------------------------------------------------
OBJ="$DIR/obj"
mkdir -p "$OBJ"
LOG="$DIR/build.log"
: > "$LOG"
kmake() { nice -n 10 make -C "$SRC" O="$OBJ" "$@" >> "$LOG" 2>&1; }

say "configuring (x86_64_defconfig + fragment) in $OBJ"
kmake x86_64_defconfig || die "x86_64_defconfig failed; see $LOG"
args=()
while IFS= read -r line; do
    [[ -z "$line" || "$line" == \#* ]] && continue
    name=${line%%=*} val=${line#*=}
    case "$val" in
        y) args+=(--enable "$name") ;;
        m) args+=(--module "$name") ;;
        n) args+=(--disable "$name") ;;
        \"*\") v=${val#\"}; args+=(--set-str "$name" "${v%\"}") ;;
        *) args+=(--set-val "$name" "$val") ;;
    esac
done <<<"$FRAGMENT"
"$SRC/scripts/config" --file "$OBJ/.config" "${args[@]}"
kmake olddefconfig || die "olddefconfig failed; see $LOG"
# Choices the first pass could not make (a symbol whose dependency came on
# only in that pass): apply the fragment once more.
"$SRC/scripts/config" --file "$OBJ/.config" "${args[@]}"
kmake olddefconfig || die "olddefconfig failed; see $LOG"

bad=()
for o in "${MUST[@]}"; do
    grep -qx "CONFIG_$o" "$OBJ/.config" || bad+=("$o (have: $(grep -E "^(# )?CONFIG_${o%%=*}[= ]" "$OBJ/.config" || echo unset))")
done
for o in "${MUST_NOT[@]}"; do
    grep -qE "^CONFIG_$o=[ym]" "$OBJ/.config" && bad+=("$o must be off")
done
((${#bad[@]} == 0)) || die "the configuration lost options: ${bad[*]}"

# --- build ------------------------------------------------------------------------
say "building bzImage and modules (make -j$JOBS, nice 10; log: $LOG)"
t0=$(date +%s)
kmake -j"$JOBS" bzImage modules || die "kernel build failed; see the end of $LOG"
kmake -j"$JOBS" modules_prepare || die "modules_prepare failed; see $LOG"
RELEASE=$(cat "$OBJ/include/config/kernel.release")
rm -rf "$DIR/modules"
kmake INSTALL_MOD_PATH="$DIR/modules" INSTALL_MOD_STRIP=1 modules_install ||
    die "modules_install failed; see $LOG"
MODDIR="$DIR/modules/lib/modules/$RELEASE"
[[ -f "$MODDIR/modules.dep" ]] || die "no $MODDIR/modules.dep after modules_install"
t1=$(date +%s)

cp "$OBJ/arch/x86/boot/bzImage" "$DIR/bzImage"
cp "$OBJ/.config" "$DIR/config"
cat > "$DIR/env" <<EOF
DK_RELEASE=$RELEASE
DK_IMAGE=$DIR/bzImage
DK_OBJ=$OBJ
DK_MODULES=$MODDIR
DK_BUILD_SECONDS=$((t1 - t_begin))
EOF
echo "$key" > "$DIR/stamp"
say "built $RELEASE in $((t1 - t_begin)) s (make: $((t1 - t0)) s): $DIR/bzImage"
