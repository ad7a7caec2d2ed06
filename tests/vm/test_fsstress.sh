#!/bin/sh
# xfstests' fsstress, 4 processes on one directory, on morselfs and on
# tmpfs (tests/vm/fsx-common.sh), 2 seeds.  fsstress has no data model:
# it reports failed operations it does not expect and exits non-zero.
. ./fsx-common.sh

run_fss() {
	dir=$1/fss; seed=$2
	rm -rf $dir; mkdir -p $dir
	t0=$(date +%s)
	./fsstress -d $dir -n 3000 -p 4 -s $seed > $LOGS/fss.out 2>&1
	rc=$?
	rm -rf $dir
	echo "# fsstress on $1 (seed $seed): exit $rc in $(( $(date +%s) - t0 )) s"
	[ $rc -eq 0 ] || tail -n 20 $LOGS/fss.out | sed 's/^/#   /'
	return $rc
}

for s in 51 52; do
	if run_fss $T $s; then t=pass; else t=fail; fi
	if run_fss $M $s; then m=pass; else m=fail; fi
	verdict "fsstress -n 3000 -p 4 -s $s" $t $m
done
finish
