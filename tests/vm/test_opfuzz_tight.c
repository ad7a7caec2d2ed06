// SPDX-License-Identifier: GPL-2.0
/*
 * The operation fuzzer with --tight by default, for the suite (which runs
 * each program without arguments): every worker on a small morselfs mount
 * of its own that op squeeze fills, so calls run out of space
 * (tests/vm/test_opfuzz.c, "--tight").  30 s by default.
 */
#define OPFUZZ_TIGHT 1
#include "test_opfuzz.c"
