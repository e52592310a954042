// SPDX-License-Identifier: GPL-2.0
/*
 * gmemstat: gmem's counters from debugfs (gmem/stats, gmem/devices), once
 * or every INTERVAL seconds as per-second rates, in the manner of vmstat.
 * Both files are parsed by key, so keys may come, go and change order
 * between kernels: a key this tool knows but the kernel lacks shows "-".
 * Documentation/mm/gmem.rst describes the columns.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MiB		(1UL << 20)
#define MAX_KEYS	64
#define MAX_DEVS	64	/* GMEM_MAX_DEVICES */
#define HDR_EVERY	20	/* rows between repeated headers, as vmstat */
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

struct kv {
	char key[48];
	unsigned long long val;
};

/* The keys of gmem/stats, or of one line of gmem/devices. */
struct set {
	char name[32];		/* device name; "" for gmem/stats */
	int n;
	struct kv kv[MAX_KEYS];
};

/* One sample: gmem/stats as set[0], then one set per device. */
struct snap {
	double t;		/* seconds since start */
	int n;
	struct set set[MAX_DEVS + 1];
};

enum kind { RATE, MIB_RATE, GAUGE, MIB_GAUGE };

struct col {
	const char *hdr;
	const char *key;	/* in gmem/stats; in cols[], in the file shown */
	const char *dkey;	/* in gmem/devices (default_cols[] only) */
	enum kind kind;
};

/* Counters (of pages where MiB) become rates; gauges show as they are. */
static const struct col default_cols[] = {
	{ "dflt/s",	"device_faults",	"faults",	RATE },
	{ "cflt/s",	"cpu_devmem_faults",	"cpu_faults",	RATE },
	{ "todevMiB/s",	"migrated_to_dev",	"to_dev",	MIB_RATE },
	{ "tohostMiB/s", "migrated_to_host",	"to_host",	MIB_RATE },
	{ "evict/s",	"evictions",		"evictions",	RATE },
	{ "evictMiB/s", "evicted_pages",	"evicted",	MIB_RATE },
	{ "thrash/s",	"thrash_pins",		"thrash",	RATE },
	{ "oom/s",	"oom_faults",		"oom",		RATE },
	{ "usedMiB",	"devmem_used",		"devmem_used",	MIB_GAUGE },
	{ "dup",	"dup_pages",		"dup_pages",	GAUGE },
	{ "pinned",	NULL,			"pinned",	GAUGE },
};

/* For -a: the keys that are levels; any other key counts events. */
static const char *const gauges[] = {
	"devices", "address_spaces", "contexts", "regions", "devmem_pages",
	"devmem_used", "dup_pages", "pinned", "caps",
};

static struct col cols[MAX_KEYS];
static char col_keys[MAX_KEYS][48];	/* of -a */
static int ncols;
static const char *dir = "/sys/kernel/debug/gmem";
static long page_size;

static void help(FILE *f)
{
	fputs("usage: gmemstat [-d] [-a] [-o FILE] [INTERVAL [COUNT]]\n"
	      "  without INTERVAL: print every counter once, as name value\n"
	      "  INTERVAL: seconds (0.5 works) between rows of per-second rates\n"
	      "  COUNT: stop after COUNT intervals\n"
	      "  -d  per device (gmem/devices) instead of gmem/stats\n"
	      "  -a  every key as a column, not the usual few\n"
	      "  -o FILE  also write every sample's raw values to FILE as CSV\n"
	      "  $GMEM_DEBUGFS replaces /sys/kernel/debug/gmem\n", f);
}

static const struct kv *find(const struct set *s, const char *key)
{
	for (int i = 0; s && i < s->n; i++)
		if (!strcmp(s->kv[i].key, key))
			return &s->kv[i];
	return NULL;
}

static const struct set *find_set(const struct snap *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->set[i].name, name))
			return &s->set[i];
	return NULL;
}

/* Non-numeric values (caps=0x7 is numeric), keys past MAX_KEYS are left out. */
static void add(struct set *s, const char *key, const char *val)
{
	char *end;

	if (s->n == MAX_KEYS)
		return;
	s->kv[s->n].val = strtoull(val, &end, 0);
	if (end != val && !*end)
		snprintf(s->kv[s->n++].key, sizeof(s->kv[0].key), "%s", key);
}

static FILE *open_file(const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return fopen(path, "r");
}

/*
 * Reads both files; returns 0, or the errno of opening gmem/stats.  A file
 * gone (gmem unloaded while we run) leaves its part empty: "-" in the rows.
 */
static int snapshot(struct snap *s, double t)
{
	char line[4096], key[48], val[32];
	FILE *f = open_file("stats");
	int err = f ? 0 : errno;

	memset(s, 0, sizeof(*s));
	s->t = t;
	s->n = 1;
	while (f && fscanf(f, "%47s %31s", key, val) == 2)
		add(&s->set[0], key, val);
	if (f)
		fclose(f);
	f = open_file("devices");
	if (!f)
		return err;
	/* <id> <name> key=value... */
	while (s->n <= MAX_DEVS && fgets(line, sizeof(line), f)) {
		struct set *d = &s->set[s->n];
		char *p = line;
		int len;

		if (sscanf(p, "%*s %31s%n", d->name, &len) != 1)
			continue;
		for (p += len; sscanf(p, " %47[^= ]=%31s%n", key, val, &len) == 2;
		     p += len)
			add(d, key, val);
		s->n++;
	}
	fclose(f);
	return err;
}

static void add_col(const char *hdr, const char *key, enum kind kind)
{
	for (int i = 0; i < ncols; i++)
		if (!strcmp(cols[i].key, key))
			return;
	if (ncols < MAX_KEYS)
		cols[ncols++] = (struct col){ hdr, key, NULL, kind };
}

/* The sets shown: gmem/stats, or with -d the devices. */
#define for_each_shown(i, s, devs) \
	for (int i = (devs); i < ((devs) ? (s)->n : 1); i++)

/* The columns: the usual few, or with -a every key of the first sample. */
static void pick_cols(const struct snap *s, bool devs, bool all)
{
	const struct col *c;

	for (c = default_cols; !all && c < default_cols + ARRAY_SIZE(default_cols); c++)
		if (devs ? c->dkey : c->key)
			add_col(c->hdr, devs ? c->dkey : c->key, c->kind);
	for_each_shown(d, s, devs) {
		for (int i = 0; all && i < s->set[d].n && ncols < MAX_KEYS; i++) {
			/* The sample is reused: the column keeps its own copy. */
			char *key = col_keys[ncols];
			enum kind kind = RATE;

			snprintf(key, sizeof(col_keys[0]), "%s", s->set[d].kv[i].key);
			for (size_t g = 0; g < ARRAY_SIZE(gauges); g++)
				if (!strcmp(key, gauges[g]))
					kind = GAUGE;
			add_col(key, key, kind);
		}
	}
}

static int width(const struct col *c)
{
	int w = strlen(c->hdr);

	return w < 7 ? 7 : w;
}

static void header(bool devs)
{
	if (devs)
		printf("%-8s", "device");
	for (int i = 0; i < ncols; i++)
		printf(" %*s", width(&cols[i]), cols[i].hdr);
	putchar('\n');
}

static void row(const struct set *prev, const struct set *cur, double dt)
{
	for (int i = 0; i < ncols; i++) {
		const struct col *c = &cols[i];
		const struct kv *a = find(prev, c->key), *b = find(cur, c->key);
		bool rate = c->kind == RATE || c->kind == MIB_RATE;
		double v;

		if (!b || (rate && !a)) {
			printf(" %*s", width(c), "-");
			continue;
		}
		v = b->val;
		/* A counter that went down: gmem was reloaded, counting from 0. */
		if (rate)
			v = (b->val >= a->val ? b->val - a->val : b->val) / dt;
		if (c->kind == MIB_RATE || c->kind == MIB_GAUGE)
			printf(" %*.1f", width(c), v * page_size / MiB);
		else
			printf(" %*.0f", width(c), v);
	}
	putchar('\n');
}

/*
 * A CSV row of @s, or the header without @s.  The columns are the keys of
 * @first, the first sample: gmem/stats, then the devices'.
 */
static void csv_row(FILE *f, const struct snap *first, const struct snap *s)
{
	if (s)
		fprintf(f, "%.3f", s->t);
	else
		fputs("time_s", f);
	for (int d = 0; d < first->n; d++) {
		const struct set *fs = &first->set[d];

		for (int i = 0; i < fs->n; i++) {
			const struct kv *kv = s ? find(find_set(s, fs->name),
						       fs->kv[i].key) : NULL;

			if (!s)
				fprintf(f, ",%s%s%s", fs->name, d ? "." : "",
					fs->kv[i].key);
			else if (kv)
				fprintf(f, ",%llu", kv->val);
			else
				fputc(',', f);
		}
	}
	fputc('\n', f);
	/* Complete rows on disk, however the run ends (^C). */
	fflush(f);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sleeps until @t, in CLOCK_MONOTONIC seconds. */
static void sleep_until(double t)
{
	struct timespec ts = { .tv_sec = t };

	ts.tv_nsec = (t - ts.tv_sec) * 1e9;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* A positive number argument, or -1. */
static double positive(const char *s, bool integer)
{
	char *end;
	double v = integer ? strtol(s, &end, 10) : strtod(s, &end);

	return end == s || *end || !isfinite(v) || v <= 0 ? -1 : v;
}

int main(int argc, char **argv)
{
	static struct snap snaps[2], first;
	bool devs = false, all = false;
	double interval, t0;
	long count, rows = 0;
	const char *csv_path = NULL;
	FILE *csv = NULL;
	int opt, err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = sysconf(_SC_PAGE_SIZE);
	if (getenv("GMEM_DEBUGFS"))
		dir = getenv("GMEM_DEBUGFS");
	while ((opt = getopt(argc, argv, "hado:")) != -1) {
		if (opt == 'a')
			all = true;
		else if (opt == 'd')
			devs = true;
		else if (opt == 'o')
			csv_path = optarg;
		else
			goto usage;
	}
	interval = optind < argc ? positive(argv[optind], false) : 0;
	count = optind + 1 < argc ? positive(argv[optind + 1], true) : 0;
	if (argc - optind > 2 || interval < 0 || count < 0)
		goto usage;

	t0 = now();
	err = snapshot(&snaps[0], 0);
	if (err) {
		fprintf(stderr, "gmemstat: %s/stats: %s (%s)\n", dir, strerror(err),
			err == EACCES ? "debugfs is root's" :
			"gmem not loaded or debugfs not mounted");
		return 1;
	}
	if (csv_path) {
		csv = fopen(csv_path, "w");
		if (!csv) {
			fprintf(stderr, "gmemstat: %s: %s\n", csv_path,
				strerror(errno));
			return 1;
		}
		first = snaps[0];
		csv_row(csv, &first, NULL);
		csv_row(csv, &first, &snaps[0]);
	}
	if (!interval) {
		for_each_shown(d, &snaps[0], devs)
			for (int i = 0; i < snaps[0].set[d].n; i++)
				printf("%s%s%s %llu\n", snaps[0].set[d].name,
				       d ? "." : "", snaps[0].set[d].kv[i].key,
				       snaps[0].set[d].kv[i].val);
		return 0;
	}
	pick_cols(&snaps[0], devs, all);
	for (long i = 0; !count || i < count; i++) {
		const struct snap *prev = &snaps[i & 1];
		struct snap *cur = &snaps[(i + 1) & 1];

		if (i == 0 || rows >= HDR_EVERY) {
			header(devs);
			rows = 0;
		}
		/* Deadlines from the start: the rows do not drift. */
		sleep_until(t0 + (i + 1) * interval);
		snapshot(cur, now() - t0);
		if (csv)
			csv_row(csv, &first, cur);
		for_each_shown(d, cur, devs) {
			if (devs)
				printf("%-8s", cur->set[d].name);
			row(find_set(prev, cur->set[d].name), &cur->set[d],
			    cur->t - prev->t);
			rows++;
		}
	}
	return 0;
usage:
	help(opt == 'h' ? stdout : stderr);
	return opt == 'h' ? 0 : 2;
}
