#!/usr/bin/env bash
# scripts/gnu-tools.sh DIR - copy the host's GNU cp and dd, their shared
# libraries and the dynamic loader into DIR (DIR/cp, DIR/dd, DIR/lib/*,
# DIR/ld-linux-x86-64.so.2), so the busybox guest of vm/run can run the
# real tools as baselines: DIR/ld-linux-x86-64.so.2 --library-path DIR/lib
# DIR/cp ...  (bench/bench_persist.c does).  coreutils is always installed.
set -euo pipefail
dir=${1:?usage: gnu-tools.sh DIR}
mkdir -p "$dir/lib"
for tool in cp dd; do
	bin=$(command -v "$tool")
	cp -L "$bin" "$dir/$tool"
	ldd "$bin" | awk '/=> \// { print $3 }' | while read -r lib; do
		cp -L "$lib" "$dir/lib/"
	done
done
cp -L /lib64/ld-linux-x86-64.so.2 "$dir/ld-linux-x86-64.so.2"
