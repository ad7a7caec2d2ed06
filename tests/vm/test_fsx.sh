#!/bin/sh
# xfstests' fsx on morselfs and on tmpfs (tests/vm/fsx-common.sh).  Each
# case on both file systems:
#  - default mode: reads, writes, mapped reads and writes, truncates,
#    fallocate, punch and zero range (collapse and insert range are
#    refused with EOPNOTSUPP by both, which fsx detects and skips), 3 seeds;
#  - mapped I/O only: an ops file of mapped reads, mapped writes and
#    truncates, replayed (fsx has no switch for it), 2 seeds;
#  - O_DIRECT (-Z, page-aligned I/O), 2 seeds;
#  - post-EOF pollution (-e 1: garbage stored through a mapping past the
#    end before every size change must never show), 3 seeds.
. ./fsx-common.sh

# An fsx ops file of mapped reads, mapped writes and truncates only.
mapped_ops() {
	awk -v seed=$1 -v n=$2 -v len=$3 'BEGIN {
		srand(seed)
		for (i = 0; i < n; i++) {
			r = rand()
			off = int(rand() * len); sz = 1 + int(rand() * 65536)
			if (r < 0.45) printf "mapwrite %d %d 0\n", off, sz
			else if (r < 0.9) printf "mapread %d %d 0\n", off, sz
			else printf "truncate 0 %d 0\n", int(rand() * len)
		}
	}'
}

for s in 1 2 3; do case_fsx default$s -N 2000 -S $s; done
for s in 11 12; do
	mapped_ops $s 1500 262144 > $LOGS/mapped$s.ops
	case_fsx mapped$s -S $s --replay-ops=$LOGS/mapped$s.ops
done
for s in 21 22; do case_fsx odirect$s -Z -r 4096 -w 4096 -t 4096 -N 1500 -S $s; done
for s in 41 42 43; do case_fsx pollute$s -e 1 -N 2000 -S $s; done
finish
