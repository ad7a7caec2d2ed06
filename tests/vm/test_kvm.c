#define _GNU_SOURCE
/*
 * Secondary MMUs: a KVM guest whose memory is a morsel mapping.  KVM takes
 * the frames through follow_pfnmap() and only the core mm's notifiers make
 * it drop them, so these are the checks a CPU TLB flush cannot pass alone:
 *   1. a read-only mapping never becomes writable for the guest;
 *   2. after a punch and a new write, the guest reads the new frame;
 *   3. after a copy-on-write in a child, the guest reads the copy, whether
 *      pwrite() or a store through the process's own mapping made it (the
 *      store must not take the module's short path, which reaches CPU
 *      TLBs only: KVM's notifier on the address space rules it out).
 * Needs kvm.ko and kvm-amd.ko from the booted image in kmods/ (the
 * Makefile puts them there) and SVM in the guest CPU (QEMU -cpu max);
 * without them the test is skipped (tap_skip_all: exit 4).
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/morsel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm.h"

/* 16-bit guest at 0x1000: store 0x99 at [0] if asked, read [0], report. */
static const unsigned char guest_read[] = {
	0xA0, 0x00, 0x00,	/* mov al, [0] */
	0xE6, 0x10,		/* out 0x10, al */
	0xF4,			/* hlt */
};
static const unsigned char guest_store[] = {
	0xC6, 0x06, 0x00, 0x00, 0x99,	/* mov byte [0], 0x99 */
	0xA0, 0x00, 0x00,		/* mov al, [0] */
	0xE6, 0x10,			/* out 0x10, al */
	0xF4,				/* hlt */
};

struct guest {
	int vm, vcpu;
	struct kvm_run *run;
};

static int kvm;

static int guest_create(struct guest *g, void *mem, unsigned long size)
{
	struct kvm_userspace_memory_region mr = {
		.memory_size = size, .userspace_addr = (uintptr_t)mem,
	};
	struct kvm_sregs s;
	long sz;

	g->vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (g->vm < 0 || ioctl(g->vm, KVM_SET_USER_MEMORY_REGION, &mr))
		return -1;
	g->vcpu = ioctl(g->vm, KVM_CREATE_VCPU, 0);
	sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (g->vcpu < 0 || sz <= 0)
		return -1;
	g->run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, g->vcpu, 0);
	if (g->run == MAP_FAILED || ioctl(g->vcpu, KVM_GET_SREGS, &s))
		return -1;
	s.cs.base = 0;
	s.cs.selector = 0;
	s.ds.base = 0;
	s.ds.selector = 0;
	return ioctl(g->vcpu, KVM_SET_SREGS, &s);
}

/* Run the guest from 0x1000 until it halts; the byte it read, or -1. */
static int guest_run(struct guest *g)
{
	struct kvm_regs r = { .rip = 0x1000, .rflags = 2 };
	int seen = -1;

	if (ioctl(g->vcpu, KVM_SET_REGS, &r))
		return -1;
	for (;;) {
		if (ioctl(g->vcpu, KVM_RUN, 0))
			return -1;
		if (g->run->exit_reason == KVM_EXIT_IO)
			seen = *((unsigned char *)g->run + g->run->io.data_offset);
		else if (g->run->exit_reason == KVM_EXIT_HLT)
			return seen;
		else if (g->run->exit_reason != KVM_EXIT_MMIO)
			return -1;
	}
}

static void guest_destroy(struct guest *g)
{
	close(g->vcpu);
	close(g->vm);
}

static int make(const char *path, unsigned long size, unsigned char b0,
		const unsigned char *code, size_t len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || ftruncate(fd, size) || pwrite(fd, &b0, 1, 0) != 1 ||
	    pwrite(fd, code, len, 0x1000) != (ssize_t)len)
		tap_fatal("create %s", path);
	return fd;
}

static void read_only_stays_read_only(void)
{
	struct guest g;
	unsigned char b = 0;
	int fd, ro, seen;
	void *p;

	fd = make("/dev/morsel/kvm-ro", GiB, 0xAA, guest_store,
		  sizeof(guest_store));
	close(fd);
	ro = open("/dev/morsel/kvm-ro", O_RDONLY);
	tap_require(ro >= 0);
	p = mmap(NULL, GiB, PROT_READ, MAP_SHARED, ro, 0);
	tap_require(p != MAP_FAILED && guest_create(&g, p, GiB) == 0);
	seen = guest_run(&g);
	tap_require(pread(ro, &b, 1, 0) == 1);
	tap_ok(b == 0xAA,
	       "a guest store through a read-only 1 GiB mapping changes nothing (file byte %#x, guest saw %#x)",
	       b, seen);
	guest_destroy(&g);
	munmap(p, GiB);
	close(ro);
	unlink("/dev/morsel/kvm-ro");
}

static void punch_reaches_the_guest(void)
{
	unsigned char v = 0x55;
	struct guest g;
	int fd, before, after;
	char *p;

	fd = make("/dev/morsel/kvm-punch", 2 * MiB, 0x11, guest_read,
		  sizeof(guest_read));
	p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	tap_require(p != MAP_FAILED && guest_create(&g, p, 2 * MiB) == 0);
	before = guest_run(&g);
	tap_require(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      0, 4096) == 0);
	tap_require(pwrite(fd, &v, 1, 0) == 1);
	after = guest_run(&g);
	tap_ok(before == 0x11 && after == 0x55,
	       "after punch + write the guest reads the new frame (%#x then %#x)",
	       before, after);
	guest_destroy(&g);
	munmap(p, 2 * MiB);
	close(fd);
	unlink("/dev/morsel/kvm-punch");
}

/*
 * One leaf of @fd's object replaced, @direct of them by the one-mapping
 * path (only this mm's notifiers, which must still reach KVM)?
 */
static int replaced_once(int fd, long long want_direct)
{
	long long all = -1, direct = -1;

	if (replacements(fd, &all, &direct) && all == 1 &&
	    direct == want_direct)
		return 1;
	tap_diag("replaced %lld, of which by the one-mapping path %lld (want 1, %lld)",
		 all, direct, want_direct);
	return 0;
}

/* @by_store: the process stores through its mapping instead of pwrite(). */
static void copy_on_write_reaches_the_guest(int by_store)
{
	struct morsel_freeze fz = { .argsz = sizeof(fz) };
	struct morsel_split sp = { .argsz = sizeof(sp) };
	unsigned char v = 0x66;
	int fd, before, after;
	struct guest g;
	char *p;

	fd = make("/dev/morsel/kvm-base", 2 * MiB, 0x22, guest_read,
		  sizeof(guest_read));
	tap_require(ioctl(fd, MORSEL_IOC_FREEZE, &fz) == 0 &&
		    ioctl(fd, MORSEL_IOC_SPLIT, &sp) == 0);
	p = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, sp.fd, 0);
	tap_require(p != MAP_FAILED && guest_create(&g, p, 2 * MiB) == 0);
	before = guest_run(&g);
	if (by_store)
		*(volatile char *)p = v;
	else
		tap_require(pwrite(sp.fd, &v, 1, 0) == 1);
	after = guest_run(&g);
	tap_ok(before == 0x22 && after == 0x66 && replaced_once(sp.fd, by_store),
	       "after a copy-on-write in the child (%s, %s), the guest reads the copy (%#x then %#x)",
	       by_store ? "a store through the mapping" : "pwrite",
	       by_store ? "this mm's notifiers only" :
			  "unmap_mapping_range()", before, after);
	guest_destroy(&g);
	munmap(p, 2 * MiB);
	close(sp.fd);
	close(fd);
	unlink("/dev/morsel/kvm-base");
}

int main(void)
{
	if (access("kmods/kvm.ko", R_OK) ||
	    system("grep -qw svm /proc/cpuinfo") != 0)
		tap_skip_all("no kvm modules or no SVM in the guest");
	if (system("cd kmods && for m in irqbypass kvm ccp kvm-amd; do "
		   "grep -qw \"$(echo $m | tr - _)\" /proc/modules || "
		   "insmod $m.ko || exit 1; done") != 0 ||
	    (kvm = open("/dev/kvm", O_RDWR)) < 0)
		tap_skip_all("kvm modules did not load");
	read_only_stays_read_only();
	punch_reaches_the_guest();
	copy_on_write_reaches_the_guest(0);
	copy_on_write_reaches_the_guest(1);
	return tap_done();
}
