// SPDX-License-Identifier: GPL-2.0
/*
 * gmemstat: gmem's counters from debugfs (gmem/stats, gmem/devices), once
 * or every INTERVAL seconds as per-second rates, in the manner of vmstat.
 * Both files are parsed by key, so keys may come, go and change order
 * between kernels: a key this tool knows but the kernel lacks shows "-".
 * Documentation/mm/gmem.rst describes the columns.
 *
 * With -t OUTFILE -- COMMAND, it records gmem's trace events (tracefs,
 * system "gmem") while COMMAND runs instead: it enables them, runs
 * COMMAND, disables them, saves tracefs's "trace" file as OUTFILE and puts
 * tracefs back as it was (the events' enable and filter files,
 * tracing_on, buffer_size_kb).  The events are everyone's, not only
 * COMMAND's: most happen in the devices' threads.  With -b ADDR,LEN only
 * those about that address range are recorded (an event filter on addr,
 * or start and end).  tools/gmem/gmem-timeline draws such a file.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
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
	      "       gmemstat -t OUTFILE [-b ADDR,LEN] -- COMMAND [ARGS...]\n"
	      "  without INTERVAL: print every counter once, as name value\n"
	      "  INTERVAL: seconds (0.5 works) between rows of per-second rates\n"
	      "  COUNT: stop after COUNT intervals\n"
	      "  -d  per device (gmem/devices) instead of gmem/stats\n"
	      "  -a  every key as a column, not the usual few\n"
	      "  -o FILE  also write every sample's raw values to FILE as CSV\n"
	      "  $GMEM_DEBUGFS replaces /sys/kernel/debug/gmem\n"
	      "  -t OUTFILE  run COMMAND with gmem's trace events (tracefs) on,\n"
	      "      save them to OUTFILE (- for stdout), exit with COMMAND's\n"
	      "      status; needs root; tools/gmem/gmem-timeline draws them\n"
	      "  -b ADDR,LEN  with -t: only events about [ADDR, ADDR+LEN)\n"
	      "  $GMEM_TRACEFS replaces the tracefs directory found\n", f);
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

/*
 * -t: gmem's trace events while a command runs.  Every file named here is
 * relative to the tracefs directory found.
 */
#define TRACE_BUF_KB	8192	/* per CPU: tens of thousands of events */
#define MAX_EVENTS	32

static char tracefs[256];

/* tracefs's state before -t, put back after it. */
struct saved_event {
	char name[64];
	char enable;		/* '0' or '1'; 0: not read */
	bool filter_saved;	/* -b: filter read, and so changed */
	bool filtered;		/* had filter[] */
	char filter[512];
};

static struct {
	char tracing_on;	/* '0' or '1'; 0: not read */
	long buffer_kb;		/* 0: not read */
	int n;
	struct saved_event ev[MAX_EVENTS];
} saved;

static void tpath(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", tracefs, name);
}

/* Up to @n - 1 bytes of tracefs file @name, trailing newlines cut; or -errno. */
static int tread(const char *name, char *buf, size_t n)
{
	char path[512];
	ssize_t len;
	int fd;

	tpath(path, sizeof(path), name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	len = read(fd, buf, n - 1);
	if (len < 0)
		len = -errno;
	close(fd);
	if (len < 0)
		return len;
	while (len && buf[len - 1] == '\n')
		len--;
	buf[len] = '\0';
	return 0;
}

/* Writes @val to tracefs file @name (O_TRUNC); 0 or -errno. */
static int twrite(const char *name, const char *val)
{
	char path[512];
	size_t len = strlen(val);
	int fd, err = 0;

	tpath(path, sizeof(path), name);
	fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0)
		return -errno;
	if (len && write(fd, val, len) != (ssize_t)len)
		err = -errno;
	if (close(fd) && !err)
		err = -errno;
	return err;
}

/* twrite() that says what failed; 0 or -1. */
static int tset(const char *name, const char *val)
{
	int err = twrite(name, val);

	if (err)
		fprintf(stderr, "gmemstat: %s/%s: writing %s: %s\n", tracefs,
			name, val, strerror(-err));
	return err ? -1 : 0;
}

/*
 * Finds tracefs: $GMEM_TRACEFS, /sys/kernel/tracing, else debugfs's
 * tracing (which automounts once looked at), else mounts it at
 * /sys/kernel/tracing.
 * Returns 0, or 1 after saying why not (@mounted: we mounted it).
 */
static int find_tracefs(bool *mounted)
{
	static const char *const dirs[] = {
		"/sys/kernel/tracing", "/sys/kernel/debug/tracing",
	};
	char path[512];
	bool denied = false;

	*mounted = false;
	if (getenv("GMEM_TRACEFS")) {
		snprintf(tracefs, sizeof(tracefs), "%s", getenv("GMEM_TRACEFS"));
		tpath(path, sizeof(path), "trace");
		if (!access(path, F_OK))
			return 0;
		fprintf(stderr, "gmemstat: no tracefs: %s: %s\n", path,
			strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		snprintf(path, sizeof(path), "%s/trace", dirs[i]);
		if (!access(path, F_OK)) {
			snprintf(tracefs, sizeof(tracefs), "%s", dirs[i]);
			return 0;
		}
		denied |= errno == EACCES;
	}
	if (geteuid()) {
		fprintf(stderr, "gmemstat: -t needs root: tracefs is root's%s\n",
			denied ? "" : " (and not mounted)");
		return 1;
	}
	snprintf(tracefs, sizeof(tracefs), "%s", dirs[0]);
	if (mount("tracefs", tracefs, "tracefs", 0, NULL)) {
		fprintf(stderr,
			"gmemstat: no tracefs: not at %s/trace or %s/trace, and mounting it at %s: %s (a kernel without CONFIG_TRACING?)\n",
			dirs[0], dirs[1], tracefs, strerror(errno));
		return 1;
	}
	*mounted = true;
	return 0;
}

/* The numbers of buffer_size_kb: "1408", "7 (expanded: 1408)", or "X". */
static long buffer_kb(void)
{
	char buf[64], *p;

	if (tread("buffer_size_kb", buf, sizeof(buf)))
		return 0;
	p = strstr(buf, "expanded:");
	return strtol(p ? p + strlen("expanded:") : buf, NULL, 10);
}

/* The events of events/gmem/, their enable and (for -b) filter files. */
static int save_state(bool filters)
{
	char name[512], buf[16];
	struct dirent *de;
	DIR *d;

	if (!tread("tracing_on", buf, sizeof(buf)))
		saved.tracing_on = buf[0];
	saved.buffer_kb = buffer_kb();
	tpath(name, sizeof(name), "events/gmem");
	d = opendir(name);
	if (!d) {
		fprintf(stderr,
			"gmemstat: %s: %s: gmem.ko is not loaded or its kernel has no trace events\n",
			name, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) && saved.n < MAX_EVENTS) {
		struct saved_event *e = &saved.ev[saved.n];

		if (strncmp(de->d_name, "gmem_", 5) ||
		    strlen(de->d_name) >= sizeof(e->name))
			continue;
		memcpy(e->name, de->d_name, strlen(de->d_name) + 1);
		snprintf(name, sizeof(name), "events/gmem/%s/enable", e->name);
		/* "0", "1", or with a "*" in soft mode: its first character. */
		if (tread(name, buf, sizeof(buf)))
			continue;
		e->enable = buf[0];
		snprintf(name, sizeof(name), "events/gmem/%s/filter", e->name);
		if (filters && !tread(name, e->filter, sizeof(e->filter))) {
			e->filter_saved = true;
			e->filtered = strcmp(e->filter, "none");
		}
		saved.n++;
	}
	closedir(d);
	if (!saved.n) {
		fprintf(stderr,
			"gmemstat: %s/events/gmem has no events: gmem.ko is not loaded or its kernel has no trace events\n",
			tracefs);
		return -1;
	}
	return 0;
}

/* Puts back what save_state() read (each event's enable: the system's). */
static void restore_state(void)
{
	char name[128], val[32];

	for (int i = 0; i < saved.n; i++) {
		struct saved_event *e = &saved.ev[i];

		snprintf(name, sizeof(name), "events/gmem/%s/enable", e->name);
		tset(name, e->enable == '1' ? "1" : "0");
		snprintf(name, sizeof(name), "events/gmem/%s/filter", e->name);
		if (e->filter_saved)
			tset(name, e->filtered ? e->filter : "0");
	}
	if (saved.tracing_on)
		tset("tracing_on", saved.tracing_on == '1' ? "1" : "0");
	if (saved.buffer_kb > 0 && buffer_kb() != saved.buffer_kb) {
		snprintf(val, sizeof(val), "%ld", saved.buffer_kb);
		tset("buffer_size_kb", val);
	}
}

/*
 * -b: a filter on each event's address fields, those its format has: addr
 * (a fault) in the range, or [start, end) overlapping it.
 */
static int set_filters(unsigned long addr, unsigned long len)
{
	char name[128], fmt[4096], filter[128];
	unsigned long end = addr + len;

	for (int i = 0; i < saved.n; i++) {
		if (!saved.ev[i].filter_saved)
			continue;
		snprintf(name, sizeof(name), "events/gmem/%s/format",
			 saved.ev[i].name);
		if (tread(name, fmt, sizeof(fmt)))
			fmt[0] = '\0';
		if (strstr(fmt, " start;") && strstr(fmt, " end;"))
			snprintf(filter, sizeof(filter),
				 "start < %#lx && end > %#lx", end, addr);
		else if (strstr(fmt, " addr;"))
			snprintf(filter, sizeof(filter),
				 "addr >= %#lx && addr < %#lx", addr, end);
		else
			continue;
		snprintf(name, sizeof(name), "events/gmem/%s/filter",
			 saved.ev[i].name);
		if (tset(name, filter))
			return -1;
	}
	return 0;
}

/*
 * Copies tracefs's trace to @out; 0 or -1.  Says so if the buffer
 * overflowed: its header's entries-written then exceeds entries-in-buffer.
 */
static int save_trace(FILE *out, const char *out_name)
{
	unsigned long in_buf, written;
	char path[512], line[4096];
	const char *p;
	FILE *f;

	tpath(path, sizeof(path), "trace");
	f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "gmemstat: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		p = strstr(line, "entries-in-buffer/entries-written:");
		if (line[0] == '#' && p &&
		    sscanf(strchr(p, ':') + 1, "%lu/%lu", &in_buf, &written) == 2 &&
		    written > in_buf)
			fprintf(stderr,
				"gmemstat: %lu of %lu events lost: the trace buffer filled (-b narrows it)\n",
				written - in_buf, written);
		fputs(line, out);
	}
	fclose(f);
	if (fflush(out) || ferror(out)) {
		fprintf(stderr, "gmemstat: %s: %s\n", out_name, strerror(errno));
		return -1;
	}
	return 0;
}

static pid_t child;

/* ^C and the like go to the command; we stay to put tracefs back. */
static void forward(int sig)
{
	if (child > 0)
		kill(child, sig);
}

/* Runs @argv; its exit status as a shell gives it, 127 if not run. */
static int run(char **argv)
{
	static const int sigs[] = { SIGINT, SIGQUIT, SIGTERM, SIGHUP };
	struct sigaction sa = { .sa_handler = forward }, old[ARRAY_SIZE(sigs)];
	int status;

	fflush(NULL);
	/* Before the fork: a signal between the two would leave tracefs set. */
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		sigaction(sigs[i], &sa, &old[i]);
	child = fork();
	if (child < 0) {
		perror("gmemstat: fork");
		for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
			sigaction(sigs[i], &old[i], NULL);
		return 127;
	}
	if (!child) {
		for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
			sigaction(sigs[i], &old[i], NULL);
		execvp(argv[0], argv);
		fprintf(stderr, "gmemstat: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		sigaction(sigs[i], &old[i], NULL);
	child = 0;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/* -t: @argv run with the events on, the trace in @out_name. */
static int trace_run(const char *out_name, const char *range, char **argv)
{
	unsigned long addr = 0, len = 0;
	bool mounted, filters = range;
	int ret = 1, status;
	char *end, val[32];
	FILE *out;

	if (range) {
		addr = strtoul(range, &end, 0);
		if (end != range && *end == ',')
			len = strtoul(end + 1, &end, 0);
		/* len 0: not parsed, or an empty range. */
		if (*end || !len || addr + len < addr) {
			fprintf(stderr, "gmemstat: -b %s: not ADDR,LEN\n", range);
			return 2;
		}
	}
	if (find_tracefs(&mounted))
		return 1;
	if (save_state(filters))
		goto out_umount;
	out = strcmp(out_name, "-") ? fopen(out_name, "w") : stdout;
	if (!out) {
		fprintf(stderr, "gmemstat: %s: %s\n", out_name, strerror(errno));
		goto out_umount;
	}
	/* From here on, tracefs changes: restore_state() undoes it. */
	if (tset("events/gmem/enable", "0"))
		goto out_restore;
	if (saved.buffer_kb < TRACE_BUF_KB) {
		snprintf(val, sizeof(val), "%d", TRACE_BUF_KB);
		if (twrite("buffer_size_kb", val))
			fprintf(stderr,
				"gmemstat: could not grow the trace buffer to %s KiB per CPU; going on with %ld\n",
				val, saved.buffer_kb);
	}
	if ((filters && set_filters(addr, len)) || tset("trace", "") ||
	    tset("events/gmem/enable", "1") || tset("tracing_on", "1"))
		goto out_restore;

	status = run(argv);
	/* A reader of "-" that goes away fails the copy (EPIPE), not us. */
	signal(SIGPIPE, SIG_IGN);

	if (!tset("events/gmem/enable", "0") && !save_trace(out, out_name))
		ret = status;
	else if (status)
		ret = status;
out_restore:
	restore_state();
	if (out != stdout && fclose(out)) {
		fprintf(stderr, "gmemstat: %s: %s\n", out_name, strerror(errno));
		ret = ret ? ret : 1;
	}
out_umount:
	if (mounted)
		umount(tracefs);
	return ret;
}

int main(int argc, char **argv)
{
	static struct snap snaps[2], first;
	bool devs = false, all = false;
	double interval, t0;
	long count, rows = 0;
	const char *csv_path = NULL, *trace_out = NULL, *range = NULL;
	FILE *csv = NULL;
	int opt, err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = sysconf(_SC_PAGE_SIZE);
	if (getenv("GMEM_DEBUGFS"))
		dir = getenv("GMEM_DEBUGFS");
	/* "+": the command's own options are not ours. */
	while ((opt = getopt(argc, argv, "+hado:t:b:")) != -1) {
		if (opt == 'a')
			all = true;
		else if (opt == 'd')
			devs = true;
		else if (opt == 'o')
			csv_path = optarg;
		else if (opt == 't')
			trace_out = optarg;
		else if (opt == 'b')
			range = optarg;
		else
			goto usage;
	}
	if (trace_out) {
		/* "--" ends the options: the command's are its own. */
		if (optind == argc || devs || all || csv_path)
			goto usage;
		return trace_run(trace_out, range, argv + optind);
	}
	if (range)
		goto usage;
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
