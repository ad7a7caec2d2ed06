#!/bin/sh
# morselctl end to end, in the guest: create, import, cat, stat, ls, freeze,
# split, save/load/verify/info/compact of images, rm, and its errors (exit
# 1 with a message, 2 for usage).
cd "$(dirname "$0")" || exit 1
C=./morselctl
n=0; failed=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi; }
t() { desc=$1; shift; "$@" >/tmp/ctl.out 2>/tmp/ctl.err; ok $? "$desc"; }
f() { want=$1; desc=$2; shift 2; "$@" >/tmp/ctl.out 2>/tmp/ctl.err; rc=$?;
      [ $rc = "$want" ] && [ -s /tmp/ctl.err ]; ok $? "$desc (exit $rc: $(head -c 120 /tmp/ctl.err))"; }
echo "TAP version 13"
t "create a 4 MiB morsel" $C create ctl-a 4M
f 1 "create it again fails with a message" $C create ctl-a 4M
t "create with a size in bytes, not a multiple of 4 KiB" $C create ctl-b 4097
[ "$(stat -c %s /dev/morsel/ctl-b)" = 4097 ]; ok $? "its size is 4097 bytes"
rm -f /dev/morsel/ctl-b
printf 'hello morsel\n' > /tmp/ctl.in
t "import a file into it" $C import ctl-a /tmp/ctl.in
$C cat ctl-a | head -c 13 > /tmp/ctl.cat
cmp -s /tmp/ctl.in /tmp/ctl.cat; ok $? "cat gives the contents back"
t "stat --json" $C stat ctl-a --json
grep -q '"frozen": false' /tmp/ctl.out; ok $? "stat --json says not frozen"
t "ls lists it" $C ls
grep -q ctl-a /tmp/ctl.out; ok $? "ls output names ctl-a"
f 1 "split of an unfrozen base fails with a message" $C split ctl-a ctl-c
grep -q "not frozen" /tmp/ctl.err; ok $? "the message says the base is not frozen"
t "freeze" $C freeze ctl-a
t "split a named child" $C split ctl-a ctl-c
$C cat ctl-c | head -c 13 > /tmp/ctl.cat
cmp -s /tmp/ctl.in /tmp/ctl.cat; ok $? "the child reads the base's contents"
t "stat of the child" $C stat ctl-c --json
grep -q '"parent_ino": [1-9]' /tmp/ctl.out; ok $? "the child's stat names a parent"
f 1 "import into the frozen base fails (EPERM)" $C import ctl-a /tmp/ctl.in
# --- images ---
I=/tmp/ctl-img; mkdir -p $I
t "save the frozen base (read-only is enough)" $C save ctl-a $I/a.img
grep -q "full image, 1 of 1 pages" /tmp/ctl.out; ok $? "save says what it stored ($(cat /tmp/ctl.out))"
t "info --json" $C info $I/a.img --json
grep -q '"kind": "full"' /tmp/ctl.out && grep -q '"present_pages": 1' /tmp/ctl.out; ok $? "info --json: kind and pages"
t "verify" $C verify $I/a.img
printf 'child page\n' | dd of=/dev/morsel/ctl-c bs=1 seek=8192 conv=notrunc 2>/dev/null
t "save the child as a delta" $C save ctl-c $I/c.img --delta ctl-a --json
grep -q '"kind": "delta"' /tmp/ctl.out && grep -q '"stored_pages": 1' /tmp/ctl.out; ok $? "the delta stores the child's one page"
t "load the delta against the base" $C load ctl-d $I/c.img --base ctl-a
cmp -s /dev/morsel/ctl-c /dev/morsel/ctl-d; ok $? "the loaded child equals the saved one"
f 1 "a delta without --base fails with a message" $C load ctl-e $I/c.img
printf 'more\n' | dd of=/dev/morsel/ctl-c bs=1 seek=12288 conv=notrunc 2>/dev/null
t "an incremental save" $C save ctl-c $I/c1.img --incremental $I/c.img
grep -q "increment image, 1 of" /tmp/ctl.out; ok $? "the increment stores one page ($(cat /tmp/ctl.out))"
t "verify the chain" $C verify $I/c.img $I/c1.img --json
grep -q '"ok": true' /tmp/ctl.out; ok $? "verify --json says ok"
t "compact the chain" $C compact $I/cc.img $I/c.img $I/c1.img
t "load the compacted delta" $C load ctl-f $I/cc.img --base ctl-a
cmp -s /dev/morsel/ctl-c /dev/morsel/ctl-f; ok $? "it equals the child"
cp $I/a.img $I/bad.img
printf 'X' | dd of=$I/bad.img bs=1 seek=40 conv=notrunc 2>/dev/null
f 1 "verify of a damaged image fails" $C verify $I/bad.img
grep -q "offset 0" /tmp/ctl.err; ok $? "and names the offset"
$C verify $I/bad.img --json > /tmp/ctl.out 2>/dev/null
grep -q '"ok": false' /tmp/ctl.out && grep -q '"offset": 0' /tmp/ctl.out; ok $? "verify --json reports the damage"
f 1 "load of a damaged image fails" $C load ctl-g $I/bad.img
[ ! -e /dev/morsel/ctl-g ]; ok $? "and leaves no object behind"
f 1 "load of a file that is no image fails" $C load ctl-g /tmp/ctl.in
f 2 "save without IMAGE is a usage error" $C save ctl-a
t "rm the loaded ones" $C rm ctl-d ctl-f
t "rm both" $C rm ctl-a ctl-c
f 1 "rm of a missing morsel fails with a message" $C rm ctl-a
f 2 "an unknown command is a usage error" $C frobnicate
echo "1..$n"
echo "# $((n - failed)) passed, $failed failed"
[ $failed = 0 ]
