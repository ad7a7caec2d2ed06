#!/bin/sh
# tests/crash/dummy-writer.sh - stand-in WRITER for tests/crash/crash-loop.sh,
# run inside the VM (vm/run --disk, busybox sh) until QEMU is killed.
#
# Usage: dummy-writer.sh ROUND LAST_DURABLE [--in-place]
#
# Saves generation after generation of a state file on /mnt/disk, the way a
# careful "save to an image file" should:
#   1. write state.tmp: a header line
#        CRASHSTATE gen=N bytes=B sha256=HEX
#      then B bytes of fresh random data (HEX is their sha256);
#   2. fsync state.tmp;  3. rename it over state.img;  4. fsync the directory;
#   5. append "durable N" to durable.log and fsync it;
#   6. print "DURABLE N" on the console.
# Only after step 6 may the host count generation N as durable: after a crash
# at any point, state.img must be a complete generation >= N.
#
# --in-place is the deliberately broken variant, for showing that the harness
# catches it: it rewrites state.img in place (truncate + write, no fsync, no
# rename) and still claims "DURABLE N". Never use it in a test meant to pass.
#
# It continues from the newest generation it can find (the header of
# state.img, or LAST_DURABLE), so generations grow across rounds.
D=/mnt/disk
round=${1:-?}
last=${2:-0}
mode=${3:-atomic}
KB=${DUMMY_WRITER_KB:-3072}         # body size in KiB ("a few MB")

case "$mode" in
    atomic|--in-place) ;;
    *) echo "dummy-writer: unknown mode $mode"; exit 2 ;;
esac
[ -d "$D" ] || { echo "dummy-writer: $D is not mounted (vm/run --disk)"; exit 2; }

gen=0
if [ -f "$D/state.img" ]; then
    g=$(head -c 200 "$D/state.img" | head -n 1 |
        sed -n 's/^CRASHSTATE gen=\([0-9][0-9]*\) .*/\1/p')
    [ -n "$g" ] && gen=$g
fi
[ "$last" -gt "$gen" ] && gen=$last
echo "dummy-writer: round $round, mode $mode, continuing after generation $gen"

while :; do
    gen=$((gen + 1))
    dd if=/dev/urandom of=/tmp/body bs=4096 count=$((KB / 4)) 2>/dev/null ||
        { echo "dummy-writer: dd failed"; exit 1; }
    sum=$(sha256sum < /tmp/body)
    hdr="CRASHSTATE gen=$gen bytes=$((KB * 1024)) sha256=${sum%% *}"
    if [ "$mode" = atomic ]; then
        { echo "$hdr"; cat /tmp/body; } > "$D/state.tmp" || exit 1
        sync "$D/state.tmp" || exit 1              # fsync(state.tmp)
        mv "$D/state.tmp" "$D/state.img" || exit 1 # rename(2), same fs
        sync "$D" || exit 1                        # fsync(directory)
    else
        { echo "$hdr"; cat /tmp/body; } > "$D/state.img" || exit 1
    fi
    echo "durable $gen" >> "$D/durable.log" || exit 1
    sync "$D/durable.log" || exit 1
    echo "DURABLE $gen"
done
