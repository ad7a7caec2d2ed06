#define _GNU_SOURCE
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * persist-threads: the helper threads of a save (one job at a time, handed
 * over and waited for; inline when no thread could be started) and how
 * many CPUs saves and loads may use.
 */
#include "persist-internal.h"

#include <sched.h>
#include <string.h>
#include <unistd.h>

static void *helper_main(void *arg)
{
	struct helper *h = arg;
	int ret;

	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (!h->pending && !h->quit)
			pthread_cond_wait(&h->cv, &h->mu);
		if (!h->pending)
			break;
		pthread_mutex_unlock(&h->mu);
		ret = h->run(h->arg);
		pthread_mutex_lock(&h->mu);
		if (ret && !h->err)
			h->err = ret;
		h->pending = false;
		pthread_cond_broadcast(&h->cv);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

void mp_helper_start(struct helper *h, int (*run)(void *), void *arg)
{
	h->run = run;
	h->arg = arg;
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	h->ok = !pthread_create(&h->thr, NULL, helper_main, h);
}

void mp_helper_submit(struct helper *h)
{
	int ret;

	if (!h->ok) {
		ret = h->run(h->arg);
		if (ret && !h->err)
			h->err = ret;
		return;
	}
	pthread_mutex_lock(&h->mu);
	h->pending = true;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

int mp_helper_wait(struct helper *h)
{
	int ret;

	if (!h->ok)
		return h->err;
	pthread_mutex_lock(&h->mu);
	while (h->pending)
		pthread_cond_wait(&h->cv, &h->mu);
	ret = h->err;
	pthread_mutex_unlock(&h->mu);
	return ret;
}

void mp_helper_stop(struct helper *h)
{
	if (!h->ok)
		return;
	pthread_mutex_lock(&h->mu);
	h->quit = true;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

void mp_helper_join(struct helper *h)
{
	if (h->run) {
		mp_helper_stop(h);
		if (h->ok)
			pthread_join(h->thr, NULL);
		pthread_mutex_destroy(&h->mu);
		pthread_cond_destroy(&h->cv);
	}
	memset(h, 0, sizeof(*h));
}

int mp_usable_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set))
		return (int)sysconf(_SC_NPROCESSORS_ONLN);
	return CPU_COUNT(&set);
}

unsigned int mp_resolve_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 4 ? 4 : (unsigned int)n;
}
