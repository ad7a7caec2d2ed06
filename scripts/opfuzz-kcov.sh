#!/usr/bin/env bash
# make fuzz-ops-kcov: which lines of the module the operation fuzzer
# (tests/vm/test_opfuzz.c) reaches.  Builds morsel.ko against the debug
# kernel (scripts/debug-kernel.sh, docs/debug-kernel.md) with KCOV
# instrumentation (KCOV_INSTRUMENT=y: kbuild instruments external modules
# only when asked, CONFIG_KCOV_INSTRUMENT_ALL covers the kernel's own
# objects) and -g, boots that kernel (nokaslr: KCOV reports PCs less the
# KASLR offset; watchdog_thresh=60: with KCOV everywhere under TCG on a
# busy host, boot's W+X page-table walk once took 26 s of one CPU and
# tripped the 20 s soft-lockup report before the module was loaded), runs the fuzzer with --kcov (every worker traces its own
# syscalls through /sys/kernel/debug/kcov, KCOV_TRACE_PC, and keeps the PCs
# in module space), then maps the PCs into the .ko's sections
# (/sys/module/morsel/sections/*) and compares them with every
# instrumented site: each call of __sanitizer_cov_trace_pc in morsel.ko
# (its return address is the PC KCOV records), mapped to file:line with
# addr2line.  Writes docs/fuzz-coverage.md (FUZZ_KCOV_DOC=path to write
# elsewhere) and build/opfuzz-kcov/.  One boot per mode; the lines
# reached are the union.
#   FUZZ_KCOV_SECS=600          seconds of fuzzing per mode
#   FUZZ_KCOV_MODES="plain tight"  the fuzzer's modes (tight: --tight,
#                               each worker on a full mount of its own)
#   FUZZ_KCOV_PAGING=5
#   MORSEL_DEBUG_KERNEL_DIR=... the debug kernel's cache (default build/debug-kernel)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
exec 2>&1
secs=${FUZZ_KCOV_SECS:-600}
modes=${FUZZ_KCOV_MODES:-plain tight}
paging=${FUZZ_KCOV_PAGING:-5}
doc=${FUZZ_KCOV_DOC:-docs/fuzz-coverage.md}
OUT=build/opfuzz-kcov
mkdir -p "$OUT"

if ! env=$(scripts/debug-kernel.sh --print-env 2>/dev/null); then
	scripts/debug-kernel.sh || { echo "opfuzz-kcov: no debug kernel"; exit 1; }
	env=$(scripts/debug-kernel.sh --print-env) || exit 1
fi
eval "$env"
grep -q '^CONFIG_KCOV=y' "$(dirname "$DK_OBJ")/config" || { echo "opfuzz-kcov: the debug kernel has no KCOV"; exit 1; }
echo "== debug kernel $DK_RELEASE: $DK_IMAGE"

# The module, instrumented, in a copy of kmod/ (as scripts/test-debug.sh).
KM=$OUT/kmod-build
rm -rf "$KM"
mkdir -p "$KM/kmod" "$KM/include"
cp kmod/Kbuild kmod/Makefile kmod/*.c kmod/*.h "$KM/kmod/"
cp -a include/. "$KM/include/"
KM=$(cd "$KM" && pwd)
echo "== module with KCOV: $KM/kmod/morsel.ko (log: $KM/build.log)"
if ! make -C "$DK_OBJ" M="$KM/kmod" KCFLAGS=-g KCOV_INSTRUMENT=y modules > "$KM/build.log" 2>&1; then
	tail -n 30 "$KM/build.log"; echo "opfuzz-kcov: module build failed"; exit 1
fi
KO=$KM/kmod/morsel.ko
sites=$(objdump -dr "$KO" | grep -c '__sanitizer_cov_trace_pc')
[ "$sites" -gt 0 ] || { echo "opfuzz-kcov: no __sanitizer_cov_trace_pc in $KO: not instrumented"; exit 1; }
echo "== $sites instrumented sites"

disk=$OUT/disk.img
rc=0
runs=()
for mode in $modes; do
	case "$mode" in
	plain) flag= ;;
	tight) flag=--tight ;;
	*) echo "opfuzz-kcov: unknown mode '$mode' (plain, tight)"; exit 2 ;;
	esac
	rm -f "$disk" && truncate -s 2G "$disk" && mkfs.ext4 -F -q "$disk"
	echo "== fuzzing $secs s ($mode) on the debug kernel, $paging-level paging (log: $OUT/vm-$mode.log)"
	./vm/run --kernel "$DK_IMAGE" --modules-dir "$DK_MODULES" \
		--append "kfence.sample_interval=10 nokaslr watchdog_thresh=60" --module "$KO" --mem 3G \
		--paging "$paging" --timeout $((secs + 1800)) --disk "$disk" \
		--keep-log "$OUT/vm-$mode.log" -- build/tests/vm/test_opfuzz --kcov $flag \
		--secs "$secs" --progress 120 --no-selftest > "$OUT/vm-$mode.out" 2>&1
	r=$?
	[ "$r" = 0 ] || rc=$r
	grep -vE '^KCOV-(PC|SECTION) ' "$OUT/vm-$mode.out" | grep -vE '^# (log|min) op ' | tail -n 60
	grep -E '^KCOV-(PC|SECTION) ' "$OUT/vm-$mode.out" | tr -d '\r' > "$OUT/pcs-$mode.txt"
	echo "== $mode: vm/run exit $r; $(grep -c '^KCOV-PC' "$OUT/pcs-$mode.txt") module PCs"
	[ -s "$OUT/pcs-$mode.txt" ] || { echo "opfuzz-kcov: no PCs ($mode)"; exit 1; }
	runs+=("$mode:$OUT/pcs-$mode.txt:$OUT/vm-$mode.out")
done
/usr/bin/python3 - "$KO" "$doc" "$secs" "$paging" "$rc" "${runs[@]}" <<'PY'
import collections, re, subprocess, sys, datetime, os
ko, doc, secs, paging, rc = sys.argv[1:6]
runs = [a.split(':', 2) for a in sys.argv[6:]]   # mode, PC file, program output
# Executable sections of the .ko and their sizes.
secsz = {}
for l in subprocess.run(["readelf", "-SW", ko], capture_output=True, text=True).stdout.splitlines():
    m = re.match(r'\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+(\S*X\S*)\s', l)
    if m:
        secsz[m.group(1)] = int(m.group(2), 16)
hit = set()          # (section, return-address offset), over all runs
outside = npcs = 0
for mode, pcfile, vmout in runs:
    base, pcs = {}, set()   # this boot's section addresses, its PCs
    for l in open(pcfile):
        f = l.split()
        if f[0] == 'KCOV-SECTION' and f[1] in secsz:
            base[f[1]] = int(f[2], 16)
        elif f[0] == 'KCOV-PC':
            pcs.add(int(f[1], 16))
    npcs += len(pcs)
    for pc in pcs:
        for s, a in base.items():
            if a <= pc < a + secsz[s]:
                hit.add((s, pc - a)); break
        else:
            outside += 1
# Sites: relocations against __sanitizer_cov_trace_pc in each section.
sites = []           # (section, call offset, return offset)
cur = None
dump = subprocess.run(["objdump", "-dr", ko], capture_output=True, text=True).stdout
for l in dump.splitlines():
    m = re.match(r'Disassembly of section (\S+):', l)
    if m:
        cur = m.group(1); continue
    m = re.match(r'\s*([0-9a-f]+): R_X86_64_PLT32\s+__sanitizer_cov_trace_pc-0x4', l)
    if m and cur:
        r = int(m.group(1), 16)
        sites.append((cur, r - 1, r + 4))
# file:line and function of each call.
loc = {}
bysec = collections.defaultdict(list)
for s in sites:
    bysec[s[0]].append(s)
for sec, ss in bysec.items():
    inp = "".join("%x\n" % c for _, c, _ in ss)
    out = subprocess.run(["addr2line", "-e", ko, "-j", sec, "-a", "-f", "-i"], input=inp,
                         capture_output=True, text=True).stdout.splitlines()
    groups, g = [], None
    for l in out:
        if re.match(r'0x[0-9a-f]+$', l):
            g = []; groups.append(g)
        else:
            g.append(l)
    for i, s in enumerate(ss):
        g = groups[i]
        pairs = [(g[j], g[j + 1]) for j in range(0, len(g) - 1, 2)]
        # The innermost frame in the module's own sources (an inlined
        # kernel header helper counts for the module line that called it).
        pick = next((p for p in pairs if '/kmod/' in p[1]), pairs[-1])
        fn, fl = pick
        fl = re.sub(r' \(discriminator \d+\)', '', fl)
        path, _, line = fl.rpartition(':')
        loc[s] = (fn, os.path.basename(path), int(line) if line.isdigit() else 0)
lines = collections.defaultdict(lambda: [0, 0])   # (file, line) -> [sites, hit]
funcs = collections.defaultdict(lambda: [0, 0, set(), ''])
for s in sites:
    fn, f, ln = loc[s]
    h = (s[0], s[2]) in hit
    lines[(f, ln)][0] += 1
    lines[(f, ln)][1] += h
    fu = funcs[fn]
    fu[0] += 1; fu[1] += h; fu[3] = f
    if not h:
        fu[2].add(ln)
perfile = collections.defaultdict(lambda: [0, 0])
for (f, ln), (n, h) in lines.items():
    perfile[f][0] += 1
    perfile[f][1] += h > 0
tot = sum(v[0] for v in perfile.values()); reached = sum(v[1] for v in perfile.values())
nsh = sum(1 for s in sites if (s[0], s[2]) in hit)
nops = []
for mode, pcfile, vmout in runs:
    ops = re.search(r'#\s+total\s+(\d+)\s+(\d+)', open(vmout, errors='replace').read())
    nops.append("%s (%s)" % (ops.group(1) if ops else "?", mode))
modes = " and ".join("plain" if m == "plain" else "`--%s`" % m for m, _, _ in runs)
w = []
w.append("# Module coverage of the operation fuzzer (KCOV)\n")
w.append("Generated by `scripts/opfuzz-kcov.sh` (`make fuzz-ops-kcov`) on %s UTC: "
         "`tests/vm/test_opfuzz --kcov --secs %s`, %s (one boot each; "
         "`--tight` puts each worker on a full mount of its own), on the "
         "debug kernel (docs/debug-kernel.md), %s-level paging, module built "
         "with `KCOV_INSTRUMENT=y`; vm/run exit status %s; ops: %s.  A line "
         "is an instrumented source line of the module (a line holding at "
         "least one call of `__sanitizer_cov_trace_pc`, one per basic block); "
         "it is reached if the PC after one of its calls was recorded in a "
         "worker's own syscalls in any run (forked children and the "
         "library's helper threads are not traced, nor work the kernel does "
         "later in RCU callbacks or other tasks, nor a process's exit: KCOV "
         "stops tracing a task before its address space goes).\n" % (
         datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), secs, modes,
         paging, rc, ", ".join(nops)))
w.append("**%d of %d lines reached (%.1f %%)**; %d of %d instrumented sites "
         "(basic blocks); %d module PCs recorded%s.\n" % (reached, tot,
         100.0 * reached / max(tot, 1), nsh, len(sites), npcs,
         ", %d outside the module's executable sections" % outside if outside else ""))
w.append("| file | lines reached | lines | % |\n| --- | ---: | ---: | ---: |")
for f in sorted(perfile):
    n, h = perfile[f]
    w.append("| `%s` | %d | %d | %.0f |" % (f, h, n, 100.0 * h / max(n, 1)))
w.append("")
never = sorted((fu[3], fn) for fn, fu in funcs.items() if fu[1] == 0)
w.append("## Functions never reached (%d of %d)\n" % (len(never), len(funcs)))
byf = collections.defaultdict(list)
for f, fn in never:
    byf[f].append(fn)
for f in sorted(byf):
    w.append("- `%s`: %s" % (f, ", ".join("`%s`" % x for x in sorted(byf[f]))))
w.append("")
w.append("## Lines never reached in functions that ran\n")
w.append("Per function: the unreached instrumented lines (error paths, "
         "races and limits the fuzzer does not provoke are the usual "
         "reason).\n")
for fn, fu in sorted(funcs.items(), key=lambda x: (x[1][3], x[0])):
    if fu[1] == 0 or not fu[2]:
        continue
    ls = sorted(fu[2])
    w.append("- `%s` `%s` (%d of %d sites reached): lines %s" % (fu[3], fn, fu[1], fu[0],
             ", ".join(str(x) for x in ls)))
open(doc, "w").write("\n".join(w) + "\n")
print("coverage: %d of %d lines (%.1f %%), %d of %d sites; %d functions never reached; written to %s"
      % (reached, tot, 100.0 * reached / max(tot, 1), nsh, len(sites), len(never), doc))
PY
exit "$rc"
