#!/bin/sh
# xfstests' fsx on a file longer than 1 GiB (tests/vm/fsx-common.sh): its
# operations cross 2 MiB and 1 GiB granules, so the object changes root
# level and links at both levels.  fsx keeps two copies of the whole file
# in memory (2.2 GB: the guest needs 4 GiB) and fills one with random
# bytes first, about 80 s under QEMU whatever the number of operations:
# so tmpfs, the reference, runs only if morselfs fails, to tell an fsx
# problem from ours.
. ./fsx-common.sh
mem=$(awk '/^MemTotal/ { print $2 }' /proc/meminfo)
if [ "$mem" -lt 3500000 ]; then
	echo "1..0 # SKIP needs a 4 GiB guest (MemTotal $mem kB)"
	exit 4
fi
args="-l 1100000000 -o 4194304 -N 30 -S 31"
if run_fsx long31 $M $args; then
	ok "fsx long31 ($args) on morselfs"
elif run_fsx long31 $T $args; then
	notok "fsx long31 ($args) on morselfs, which passes on tmpfs"
else
	ok "fsx long31 on morselfs # SKIP fails on tmpfs too"
fi
finish
