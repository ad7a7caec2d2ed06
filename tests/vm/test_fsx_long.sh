#!/bin/sh
# xfstests' fsx on a file longer than 1 GiB, on morselfs and on tmpfs
# (tests/vm/fsx-common.sh): its operations cross 2 MiB and 1 GiB granules,
# so the object changes root level and links at both levels.  fsx keeps
# two copies of the whole file in memory (2.2 GB): the guest needs 4 GiB.
. ./fsx-common.sh
mem=$(awk '/^MemTotal/ { print $2 }' /proc/meminfo)
if [ "$mem" -lt 3500000 ]; then
	echo "1..0 # SKIP needs a 4 GiB guest (MemTotal $mem kB)"
	exit 4
fi
case_fsx long31 -l 1100000000 -o 4194304 -N 30 -S 31
finish
