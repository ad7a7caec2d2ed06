#!/bin/sh
# morselctl end to end, in the guest: create, load, cat, stat, ls, freeze,
# split, rm, and its errors (exit 1 with a message, 2 for usage).
cd "$(dirname "$0")" || exit 1
C=./morselctl
n=0; failed=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi; }
t() { desc=$1; shift; "$@" >/tmp/ctl.out 2>/tmp/ctl.err; ok $? "$desc"; }
f() { want=$1; desc=$2; shift 2; "$@" >/tmp/ctl.out 2>/tmp/ctl.err; rc=$?;
      [ $rc = "$want" ] && [ -s /tmp/ctl.err ]; ok $? "$desc (exit $rc: $(head -c 120 /tmp/ctl.err))"; }
echo "TAP version 13"
echo "1..20"
t "create a 4 MiB morsel" $C create ctl-a 4M
f 1 "create it again fails with a message" $C create ctl-a 4M
f 2 "create with a size that is not a multiple of 4 KiB is a usage error" $C create ctl-b 4097
printf 'hello morsel\n' > /tmp/ctl.in
t "load a file into it" $C load ctl-a /tmp/ctl.in
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
f 1 "load into the frozen base fails (EPERM)" $C load ctl-a /tmp/ctl.in
t "rm both" $C rm ctl-a ctl-c
f 1 "rm of a missing morsel fails with a message" $C rm ctl-a
f 2 "an unknown command is a usage error" $C frobnicate
echo "# $((n - failed)) passed, $failed failed"
[ $failed = 0 ]
