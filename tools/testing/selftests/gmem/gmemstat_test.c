// SPDX-License-Identifier: GPL-2.0
/*
 * tools/gmem/gmemstat, as a user runs it: its one-shot and per-device
 * output agree with debugfs, an interval run prints a header and rows, and
 * -o records every sample as CSV.  Skips when the tool is not installed
 * (the runner puts it in /opt/gmem/tools; GMEMSTAT names another path).
 * Needs gmem.ko and gmem_npu.ko loaded.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "gmem_util.h"

static const char *gmemstat(void)
{
	const char *p = getenv("GMEMSTAT");

	return p ? p : "/opt/gmem/tools/gmemstat";
}

/* Value of @key in "key value" lines printed by gmemstat @args, or -1. */
static long tool_value(const char *args, const char *key)
{
	char cmd[256], k[96];
	long v, found = -1;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "%s %s", gmemstat(), args);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fscanf(f, "%95s %ld", k, &v) == 2)
		if (!strcmp(k, key))
			found = v;
	pclose(f);
	return found;
}

FIXTURE(gmemstat) {};

FIXTURE_SETUP(gmemstat)
{
	if (access(gmemstat(), X_OK))
		SKIP(return, "%s not installed", gmemstat());
	ASSERT_GT(dev_stat("npu0", "devmem_pages"), 0);
}

FIXTURE_TEARDOWN(gmemstat) {}

/* Counters that do not move while the test runs read the same. */
TEST_F(gmemstat, once_matches_debugfs)
{
	ASSERT_EQ(tool_value("", "devmem_pages"), gmem_stat("devmem_pages"));
	ASSERT_EQ(tool_value("", "devices"), gmem_stat("devices"));
	ASSERT_EQ(tool_value("-d", "npu0.devmem_pages"),
		  dev_stat("npu0", "devmem_pages"));
	ASSERT_EQ(tool_value("-d", "npu0.caps"), dev_stat("npu0", "caps"));
}

/* Two intervals: a header and two rows; -o: a header and three samples. */
TEST_F(gmemstat, interval_and_record)
{
	const char *csv = "/tmp/gmemstat_test.csv";
	char cmd[256], line[4096];
	int rows = 0, samples = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "%s -o %s 0.1 2", gmemstat(), csv);
	f = popen(cmd, "r");
	ASSERT_NE(f, NULL);
	ASSERT_NE(fgets(line, sizeof(line), f), NULL);
	ASSERT_NE(strstr(line, "usedMiB"), NULL) TH_LOG("header: %s", line);
	while (fgets(line, sizeof(line), f))
		rows++;
	ASSERT_EQ(pclose(f), 0);
	ASSERT_EQ(rows, 2);

	f = fopen(csv, "r");
	ASSERT_NE(f, NULL);
	ASSERT_NE(fgets(line, sizeof(line), f), NULL);
	ASSERT_EQ(strncmp(line, "time_s,", 7), 0);
	ASSERT_NE(strstr(line, "npu0.devmem_used"), NULL);
	while (fgets(line, sizeof(line), f))
		samples++;
	fclose(f);
	unlink(csv);
	ASSERT_EQ(samples, 3);
}

/* Bad arguments: the usage text and status 2. */
TEST_F(gmemstat, bad_arguments)
{
	char cmd[256];
	int status;

	snprintf(cmd, sizeof(cmd), "%s -x >/dev/null 2>&1", gmemstat());
	status = system(cmd);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 2);
	snprintf(cmd, sizeof(cmd), "%s 0 >/dev/null 2>&1", gmemstat());
	status = system(cmd);
	ASSERT_EQ(WEXITSTATUS(status), 2);
}

TEST_HARNESS_MAIN
