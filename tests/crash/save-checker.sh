#!/bin/sh
# crash-loop.sh CHECKER for morsel images: ROUND LAST.  From the writers'
# DURABLE lines (/test/files/crash-loop.durable, "ROUND DURABLE ..."):
# the newest full save ever reported (full.img survives rounds) and the
# last chain increment this round's writer reported (the chain restarts
# each round).  save_checker does the checking.
round=$1
d=/test/files/crash-loop.durable
full=0; chain_g=0; chain_k=-1
if [ -f "$d" ]; then
	full=$(awk '$2 == "DURABLE" && $3 == "full" && $4 > m { m = $4 } END { print m + 0 }' "$d")
	last=$(awk -v r="$round" '$1 == r && $2 == "DURABLE" && $3 == "chain" { g = $4; k = $5 } END { if (k == "") print "0 -1"; else print g, k }' "$d")
	chain_g=${last% *}; chain_k=${last#* }
fi
exec /test/files/save_checker /mnt/disk "$full" "$chain_g" "$chain_k"
