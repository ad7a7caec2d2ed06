#!/usr/bin/env bash
# The module's allocation sites, from the source (issue 13, item 3): every
# call in kmod/*.c that can allocate memory and so fail, one line each,
#
#   kmod/FILE.c:LINE:FUNCTION:CALLEE:REACH
#
# CALLEE is what is called there: an allocator (kmalloc, alloc_page,
# pagetable_alloc, xa_reserve, ...), a page-table constructor that
# allocates the split lock when spinlock_t is big (lockdep: the debug
# kernel), one of morsel's own wrappers (morsel_alloc_frame, alloc_table,
# alloc_table_filled, alloc_frames, morsel_copy_table, morsel_mm_get,
# morsel_link: the callers are sites of their own, so the proof shows
# every path into a wrapper failed, not just the wrapper),
# or a kernel function that allocates on the module's behalf
# (kernel_tmpfile_open, new_inode, vm_insert_page, apply_to_page_range,
# vfs_iter_read, mmu_notifier_get_locked, d_make_root, ...).
# REACH is "user" (a system call can reach it), "init: WHY" (only module
# load reaches it; test_failnth cannot fail it, see docs/debug-kernel.md)
# or "none: WHY" (listed by name, but allocates nothing where it is, or
# no path takes it).
#
# scripts/failnth-sites.sh compares this list with the sites a
# test_failnth walk failed.  Keep CALLEES below current when the module
# starts calling a new allocating function.
set -euo pipefail
cd "$(dirname "$0")/.."

CALLEES='kmalloc|kzalloc|kcalloc|kmalloc_array|krealloc|kvmalloc|kvzalloc|kvcalloc|kvmalloc_array|kmem_cache_alloc|kmem_cache_zalloc|alloc_inode_sb|alloc_page|alloc_pages|folio_alloc|__get_free_page|__get_free_pages|get_zeroed_page|vmalloc|vzalloc|pagetable_alloc|pagetable_pte_ctor|pagetable_pmd_ctor|xa_store|xa_reserve|xa_insert|xa_alloc|xa_store_range|kstrdup|kstrndup|kmemdup|mmu_notifier_get_locked|mmu_notifier_register|__mmu_notifier_register|kernel_tmpfile_open|new_inode|d_make_root|d_alloc|vm_insert_page|vm_insert_pages|vmf_insert_pfn|vmf_insert_pfn_prot|vmf_insert_mixed|apply_to_page_range|remap_pfn_range|vfs_iter_read|kernel_read|kobject_create_and_add|sysfs_create_group|debugfs_create_dir|debugfs_create_file|register_filesystem|kmem_cache_create|KMEM_CACHE|morsel_alloc_frame|alloc_table|alloc_table_filled|alloc_frames|morsel_copy_table|morsel_mm_get|morsel_link'

# Functions only module load runs, and why a user cannot get there.
declare -A INIT=(
	[morsel_hole_table_init]="module load: the shared hole table, made once by morsel_init"
	[morsel_link_init]="module load: the link-record cache"
	[morsel_stats_init]="module load: /sys/kernel/morsel and debugfs"
	[morselfs_init]="module load: the inode cache and the filesystem type"
)

# Calls (FUNCTION:CALLEE) that cannot fail for want of memory, or that no
# known path reaches (a fallback behind an invariant).
declare -A NONE=(
	[morsel_ro_pte_table:xa_store]="stores into the slot xa_reserve() reserved: allocates nothing"
	[shrink_root:morsel_copy_table]="a fallback no known path takes: own_tables_for_shrink() owns every table a cut makes the root before anything is freed (a failed grow that once left a level behind no longer does: grow_root())"
)

for f in kmod/*.c; do
	awk -v file="$f" -v callees="$CALLEES" '
	# The function being defined: a name at column 0 followed by "(",
	# remembered until its body opens with "{" at column 0.
	/^[A-Za-z_][A-Za-z0-9_ \t\*]*\(/ && !/;[ \t]*$/ {
		s = $0; sub(/\(.*/, "", s); n = split(s, w, /[ \t\*]+/)
		pending = w[n]
	}
	/^\{/ { fn = pending }
	/^\}/ { fn = "" }
	fn != "" {
		line = $0
		sub(/\/\*.*\*\//, "", line)		# one-line comments
		if (line ~ /^[ \t]*\*/ || line ~ /^[ \t]*\/\*/) next
		rest = line
		while (match(rest, "(^|[^A-Za-z0-9_.>])(" callees ")[ \t]*\\(")) {
			call = substr(rest, RSTART, RLENGTH)
			sub(/^[^A-Za-z0-9_]/, "", call); sub(/[ \t]*\($/, "", call)
			# The definition of a wrapper is not a call of it.
			if (call != fn)
				printf "%s:%d:%s:%s\n", file, FNR, fn, call
			rest = substr(rest, RSTART + RLENGTH)
		}
	}' "$f"
done | while IFS=: read -r file line fn call; do
	reach=user
	[ -z "${INIT[$fn]:-}" ] || reach="init: ${INIT[$fn]}"
	[ -z "${NONE[$fn:$call]:-}" ] || reach="none: ${NONE[$fn:$call]}"
	echo "$file:$line:$fn:$call:$reach"
done
