# morsel: top-level build.
#
#   make          module, library, tool, tests, benchmarks
#   make test     host unit tests, then the VM suite in 5- and 4-level paging
#   make demo     the main job, in the VM
#   make bench    benchmarks, in the VM (one BENCH line per comparison)
#   make check    kernel coding style (checkpatch.pl from linux-source-6.12)
#   make test-debug  the VM suite on a debug kernel (KASAN, lockdep, KFENCE,
#                 kmemleak, ...) built once from linux-source-6.12 into
#                 build/debug-kernel (make debug-kernel: only the kernel);
#                 docs/debug-kernel.md
#   make failnth-sites  test_failnth on the debug kernel with each injected
#                 failure's stack: which allocation sites of kmod/ it failed
#                 (scripts/alloc-sites.sh, scripts/failnth-sites.sh)
#   make fuzz     libFuzzer harness of the image reader (clang), and its seeds;
#                 make test runs it for 30 s, make fuzz-long for 10 minutes
#   make fuzz-ops the operation fuzzer (tests/vm/test_opfuzz.c) in the VM for
#                 FUZZ_OPS_SECS (3600) seconds; make test runs it 30 s per
#                 paging mode.  make fuzz-ops-kcov: on the debug kernel with
#                 KCOV, writes the module's line coverage to
#                 docs/fuzz-coverage.md (FUZZ_KCOV_SECS, 600)
#   make deps     install what the project needs (Debian packages)
#   make install  module into /lib/modules/KVER/extra (modprobe morsel),
#                 morselctl into $(PREFIX)/bin, header and library

B        := build
CC       ?= gcc
UCFLAGS  := -std=c11 -Wall -Wextra -Werror -O2 -g \
            -Iinclude/uapi -Ilib -Itests
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=all

LIB_SRC    := $(wildcard lib/*.c)
LIB_HDR    := $(wildcard lib/*.h) include/uapi/linux/morsel.h
VM_TESTS   := $(patsubst tests/vm/%.c,$(B)/tests/vm/%,$(wildcard tests/vm/test_*.c)) \
              $(patsubst tests/vm/%.sh,$(B)/tests/vm/%,$(wildcard tests/vm/test_*.sh)) \
              $(B)/tests/vm/morselctl $(B)/tests/vm/kmods/.stamp \
              $(B)/tests/vm/fsx $(B)/tests/vm/fsx-common.sh \
              $(B)/tests/vm/rsync/.stamp
HOST_TESTS := $(patsubst tests/host/%.c,$(B)/tests/host/%,$(wildcard tests/host/test_*.c))
BENCHES    := $(patsubst bench/%.c,$(B)/bench/%,$(wildcard bench/*.c))
# Crash test (tests/crash): guest programs, in the --files dir of crash-loop.sh
CRASH      := $(patsubst tests/crash/%.c,$(B)/tests/crash/files/%,$(wildcard tests/crash/*.c))
TOOLS      := $(patsubst tools/%.c,$(B)/tools/%,$(wildcard tools/*.c))

all: kmod $(B)/libmorsel.a $(TOOLS) $(VM_TESTS) $(HOST_TESTS) $(BENCHES) $(CRASH)

deps:
	scripts/deps.sh

kmod:
	$(MAKE) -C kmod

# The library, static (test programs and the tool run in a busybox guest).
$(B)/libmorsel.a: $(LIB_SRC) $(LIB_HDR)
	@mkdir -p $(B)/lib
	$(foreach s,$(LIB_SRC),$(CC) $(UCFLAGS) -c $(s) -o $(B)/lib/$(notdir $(s:.c=.o)) &&) true
	@rm -f $@	# ar only adds: the member of a removed source would stay
	ar rcs $@ $(patsubst lib/%.c,$(B)/lib/%.o,$(LIB_SRC))

$(B)/tools/%: tools/%.c $(B)/libmorsel.a $(LIB_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(UCFLAGS) -static -o $@ $< $(B)/libmorsel.a

# Real programs as users (issue 12): Debian's static libsqlite3 and liblmdb.
$(B)/tests/vm/test_sqlite: VM_LIBS = -lsqlite3 -lm
$(B)/tests/vm/test_lmdb: VM_LIBS = -llmdb
$(B)/tests/vm/test_longterm_pin $(B)/tests/vm/test_freeze_enospc_pin: VM_LIBS = -luring
$(B)/bench/bench_gup: VM_LIBS = -lsqlite3 -lm
$(B)/tests/vm/test_opfuzz_tight: tests/vm/test_opfuzz.c

$(B)/tests/vm/%: tests/vm/%.c tests/tap.h $(wildcard tests/vm/*.h) $(B)/libmorsel.a $(LIB_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(UCFLAGS) -static -pthread -o $@ $< $(B)/libmorsel.a $(VM_LIBS)

$(B)/bench/%: bench/%.c $(B)/libmorsel.a $(LIB_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(UCFLAGS) -static -pthread -o $@ $< $(B)/libmorsel.a $(VM_LIBS)

$(B)/tests/crash/files/%: tests/crash/%.c tests/crash/crash.h tests/tap.h $(B)/libmorsel.a $(LIB_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(UCFLAGS) -static -o $@ $< $(B)/libmorsel.a

# Peer tests (tests/vm/test_fsx.sh): xfstests' fsx and fsstress, built
# unmodified from the shared reference copy next to this repository; where
# it is missing, test_fsx skips (and says so).
XFSTESTS ?= $(firstword $(wildcard $(abspath ../shared/tools/xfstests) \
			    /work/shared/tools/xfstests) \
		  $(abspath ../shared/tools/xfstests))

$(B)/tests/vm/fsx: $(wildcard $(XFSTESTS)/*.c $(XFSTESTS)/*.h $(XFSTESTS)/build.sh)
	@mkdir -p $(dir $@)
	if [ -x $(XFSTESTS)/build.sh ]; then \
		$(XFSTESTS)/build.sh $(dir $@) >/dev/null; \
	else \
		echo "no $(XFSTESTS): test_fsx will skip"; rm -f $@ $(dir $@)fsstress; \
	fi

# rsync for test_roundtrip.sh: the host's binary, its libraries and their
# loader (the guest runs it as "rsync/ld-linux... --library-path rsync").
$(B)/tests/vm/rsync/.stamp:
	@mkdir -p $(dir $@)
	r=$$(command -v rsync) && cp $$r $(dir $@) && \
	for l in $$(ldd $$r | awk '/=> \// { print $$3 } /^\t\/lib/ { print $$1 }'); do \
		cp -L $$l $(dir $@); done && touch $@ || \
		echo "no rsync on the host: test_roundtrip skips its rsync part"

$(B)/tests/vm/fsx-common.sh: tests/vm/fsx-common.sh
	@mkdir -p $(dir $@)
	install -m 0644 $< $@

# Shell tests run in the guest next to a copy of the tool.
$(B)/tests/vm/%: tests/vm/%.sh
	@mkdir -p $(dir $@)
	install -m 0755 $< $@

$(B)/tests/vm/morselctl: $(B)/tools/morselctl
	@mkdir -p $(dir $@)
	install -m 0755 $< $@

# KVM from the image the VM boots, for tests/vm/test_kvm (skipped if absent).
KVER ?= $(shell scripts/kver.sh 2>/dev/null)
$(B)/tests/vm/kmods/.stamp:
	@mkdir -p $(dir $@)
	for m in virt/lib/irqbypass arch/x86/kvm/kvm drivers/crypto/ccp/ccp arch/x86/kvm/kvm-amd; do \
		f=/lib/modules/$(KVER)/kernel/$$m.ko.xz; \
		[ -r $$f ] && xz -dc $$f > $(dir $@)$$(basename $$m).ko || true; \
	done
	@touch $@

# Host tests are built with the sanitizers and link the library sources.
$(B)/tests/host/%: tests/host/%.c tests/tap.h $(LIB_SRC) $(LIB_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(UCFLAGS) $(SANFLAGS) -o $@ $< $(LIB_SRC)

# The image reader under libFuzzer: clang, ASan and UBSan; seeds are valid
# images written by tests/fuzz/make_seeds.  tests/fuzz/run.sh runs it.
FUZZ_CC    ?= clang
FUZZ_FLAGS := -std=c11 -Wall -Wextra -Werror -O1 -g -Ilib \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_LONG  ?= 600

# The image reader and what it links: the crc32c engine, full reads.
IMG_SRC    := lib/morsel-image.c lib/crc32c.c lib/full-io.c
IMG_HDR    := lib/morsel-image.h lib/crc32c.h lib/full-io.h

fuzz: $(B)/fuzz/fuzz_image $(B)/fuzz/seeds/.stamp

$(B)/fuzz/fuzz_image: tests/fuzz/fuzz_image.c $(IMG_SRC) $(IMG_HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_image.c $(IMG_SRC)

$(B)/fuzz/make_seeds: tests/fuzz/make_seeds.c $(IMG_SRC) $(IMG_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(UCFLAGS) -o $@ tests/fuzz/make_seeds.c $(IMG_SRC)

$(B)/fuzz/seeds/.stamp: $(B)/fuzz/make_seeds
	rm -rf $(B)/fuzz/seeds
	mkdir -p $(B)/fuzz/seeds
	$(B)/fuzz/make_seeds $(B)/fuzz/seeds
	@touch $@

fuzz-long: fuzz
	tests/fuzz/run.sh $(FUZZ_LONG)

# The operation fuzzer, long (scripts/opfuzz-long.sh) and with KCOV on the
# debug kernel (scripts/opfuzz-kcov.sh).
FUZZ_OPS_SECS ?= 3600
FUZZ_KCOV_SECS ?= 600
fuzz-ops: deps all
	FUZZ_OPS_SECS=$(FUZZ_OPS_SECS) scripts/opfuzz-long.sh

fuzz-ops-kcov: deps all
	FUZZ_KCOV_SECS=$(FUZZ_KCOV_SECS) scripts/opfuzz-kcov.sh

test: deps all fuzz
	scripts/test.sh

demo: deps all
	./vm/run --mem 6G -- $(B)/tools/morsel-demo

bench: deps all
	scripts/bench.sh

check:
	scripts/checkpatch.sh

debug-kernel:
	scripts/debug-kernel.sh

test-debug: deps all
	scripts/test-debug.sh

failnth-sites: deps all
	scripts/failnth-sites.sh

PREFIX ?= /usr/local
install: all
	$(MAKE) -C kmod install
	install -D -m 0755 $(B)/tools/morselctl $(DESTDIR)$(PREFIX)/bin/morselctl
	install -D -m 0644 include/uapi/linux/morsel.h $(DESTDIR)$(PREFIX)/include/linux/morsel.h
	install -D -m 0644 lib/libmorsel.h $(DESTDIR)$(PREFIX)/include/libmorsel.h
	install -D -m 0644 lib/morsel-image.h $(DESTDIR)$(PREFIX)/include/morsel-image.h
	install -D -m 0644 $(B)/libmorsel.a $(DESTDIR)$(PREFIX)/lib/libmorsel.a

clean:
	$(MAKE) -C kmod clean
	rm -rf $(B)

.PHONY: all deps kmod test demo bench check install clean fuzz fuzz-long
.PHONY: debug-kernel test-debug failnth-sites fuzz-ops fuzz-ops-kcov
