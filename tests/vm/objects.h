/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The module's per-object figures in /sys/kernel/debug/morsel/objects (one
 * line per object, after a header line): read_objects() reads the whole
 * list into objects_text, object_figures() parses one object's line.
 */
#ifndef MORSEL_TESTS_VM_OBJECTS_H
#define MORSEL_TESTS_VM_OBJECTS_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/types.h>

static char objects_text[1 << 20];

/* /sys/kernel/debug/morsel/objects into objects_text; its length or -1. */
static inline int read_objects(void)
{
	int fd = open("/sys/kernel/debug/morsel/objects", O_RDONLY), len = 0;
	ssize_t n;

	if (fd < 0)
		return -1;
	while ((n = read(fd, objects_text + len,
			 sizeof(objects_text) - 1 - len)) > 0)
		len += n;
	close(fd);
	objects_text[len] = 0;
	return len;
}

/* The first @n figures after inode @ino on its line; 1 if all were read. */
static inline int object_figures(ino_t ino, long long *f, int n)
{
	char key[32], *p, *end;

	if (read_objects() < 0)
		return 0;
	snprintf(key, sizeof(key), "\n%lu ", (unsigned long)ino);
	p = strstr(objects_text, key);
	if (!p)
		return 0;
	p += strlen(key) - 1;
	for (int i = 0; i < n; i++, p = end) {
		f[i] = strtoll(p, &end, 10);
		if (end == p)
			return 0;
	}
	return 1;
}

#endif
