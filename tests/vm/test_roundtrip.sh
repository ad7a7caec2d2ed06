#!/bin/sh
# Odd-sized files go into morselfs and come back out with ordinary tools,
# byte for byte and size for size (issue 14).  What this checks, for files
# of 0, 1, 100, 4095, 4096, 4097, 12289, 65537, 1 MiB + 1, 2 MiB +- 1 and
# 3000001 bytes of random data, and a sparse 5 MB file with 7 bytes at its
# end: cp in and cmp; cat out and cmp; tar into a morselfs directory and
# tar out again; rsync -a in and out (rsync writes temporary files and
# renames them), and rsync --inplace of a changed, shorter source over its
# copy (partial writes and a truncate to an odd size).  The rsync parts
# run the host's rsync with its libraries (the guest has only busybox).
cd /test/files || exit 1
echo "TAP version 13"
n=0; failed=0
check() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else
	echo "not ok $n - $2"; failed=$((failed + 1)); fi; }

SRC=/tmp/rt-src
M=/dev/morsel/rt
OUT=/tmp/rt-out
rm -rf $SRC $M $OUT
mkdir -p $SRC $M $OUT
sizes="0 1 100 4095 4096 4097 12289 65537 1048577 2097151 2097153 3000001"
for s in $sizes; do head -c $s /dev/urandom > $SRC/f$s; done
dd if=/dev/urandom of=$SRC/sparse bs=1 count=7 seek=5000000 2>/dev/null
files="$(cd $SRC && ls)"

# same DIR1 DIR2: every file of $SRC in both, same size and bytes.
same() {
	for f in $files; do
		[ "$(stat -c %s $1/$f)" = "$(stat -c %s $2/$f)" ] || {
			echo "# $f: size $(stat -c %s $1/$f) vs $(stat -c %s $2/$f)"; return 1; }
		cmp -s $1/$f $2/$f || { echo "# $f differs"; return 1; }
	done
}

for f in $files; do cp $SRC/$f $M/$f || break; done
same $SRC $M; check $? "cp into morselfs: every size and byte equal"
[ "$(stat -c %s $M/f4097)" = 4097 ] && [ "$(stat -c %s $M/f0)" = 0 ]
check $? "sizes are exact (4097 is 4097, an empty file is 0)"
mkdir -p $OUT/cat
for f in $files; do cat $M/$f > $OUT/cat/$f; done
same $SRC $OUT/cat; check $? "cat out of morselfs: every size and byte equal"

mkdir -p $M/tar $OUT/tar
tar cf - -C $SRC . | tar xf - -C $M/tar
same $SRC $M/tar; check $? "tar into a morselfs directory: equal"
tar cf - -C $M/tar . | tar xf - -C $OUT/tar
same $SRC $OUT/tar; check $? "tar out of it again: equal"

if [ -x rsync/rsync ]; then
	RSYNC="rsync/ld-linux-x86-64.so.2 --library-path rsync rsync/rsync"
	$RSYNC -a --numeric-ids $SRC/ $M/rs/ > /tmp/rt-rsync.log 2>&1 &&
		same $SRC $M/rs
	check $? "rsync -a into morselfs: equal"
	$RSYNC -a --numeric-ids $M/rs/ $OUT/rs/ > /tmp/rt-rsync.log 2>&1 &&
		same $SRC $OUT/rs
	check $? "rsync -a out of morselfs: equal"
	# A changed source, shorter than its copy: --inplace rewrites the
	# changed blocks in the copy and truncates it to the new size.
	head -c 2000003 $SRC/f3000001 > $SRC/g
	printf 'changed' | dd of=$SRC/g bs=1 seek=1000000 conv=notrunc 2>/dev/null
	cp $SRC/f3000001 $M/rs/g
	$RSYNC --inplace --no-whole-file $SRC/g $M/rs/g > /tmp/rt-rsync.log 2>&1 &&
		cmp -s $SRC/g $M/rs/g && [ "$(stat -c %s $M/rs/g)" = 2000003 ]
	check $? "rsync --inplace of a changed, shorter file: equal, 2000003 bytes"
	[ $failed = 0 ] || sed 's/^/#   /' /tmp/rt-rsync.log
else
	n=$((n + 1)); echo "ok $n - rsync # SKIP no rsync bundle (host had no rsync)"
fi

rm -rf $SRC $M $OUT
echo "1..$n"
echo "# $((n - failed)) passed, $failed failed"
[ $failed = 0 ]
