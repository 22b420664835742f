/*
 * test_tms.c: C11 consumer test of libtms through include/tms.h.
 *
 * Usage: test_tms_c <fresh-temp-dir> [<legacy-fixture-dir>]
 *   <fresh-temp-dir>      an empty writable directory; jobs.db / audit.db are created in it.
 *   <legacy-fixture-dir>  a writable directory holding copies of the legacy jobs.db + audit.db.
 *
 * Built by scripts/test-c.sh with ASan + UBSan (leak detection on): every string the library
 * returns is freed with tms_string_free and every store is closed.
 * The last line printed is "c: N passed, M failed"; the exit status is non-zero on any failure.
 */

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "tms.h"

/* ------------------------------------------------------------------------------------------ */
/* Check helpers                                                                              */
/* ------------------------------------------------------------------------------------------ */

static int g_passed;
static int g_failed;

static void report_failure(const char *file, int line, const char *what) {
    char *msg = tms_last_error_message();
    fprintf(stderr, "%s:%d: CHECK failed: %s\n    last error: %s\n", file, line, what,
            msg ? msg : "(none)");
    tms_string_free(msg);
}

static void check_impl(int ok, const char *expr, const char *file, int line) {
    if (ok) {
        g_passed++;
        return;
    }
    g_failed++;
    report_failure(file, line, expr);
}

static void check_status_impl(int got, int want, const char *expr, const char *file, int line) {
    if (got == want) {
        g_passed++;
        return;
    }
    g_failed++;
    char what[1024];
    snprintf(what, sizeof what, "%s returned %s (%d), expected %s (%d)", expr,
             tms_status_name(got), got, tms_status_name(want), want);
    report_failure(file, line, what);
}

static void check_streq_impl(const char *got, const char *want, const char *expr, const char *file,
                             int line) {
    if (got != NULL && want != NULL && strcmp(got, want) == 0) {
        g_passed++;
        return;
    }
    g_failed++;
    char what[2048];
    snprintf(what, sizeof what, "%s is \"%.900s\", expected \"%.900s\"", expr,
             got ? got : "(NULL)", want ? want : "(NULL)");
    report_failure(file, line, what);
}

/* Count a pass or a failure; on failure print file:line and tms_last_error_message(). */
#define CHECK(cond) check_impl(!!(cond), #cond, __FILE__, __LINE__)
/* The call's TmsStatus equals the expected one (names both on failure). */
#define CHECK_STATUS(call, want) check_status_impl((int)(call), (int)(want), #call, __FILE__, __LINE__)
#define CHECK_OK(call) CHECK_STATUS(call, TMS_STATUS_OK)
#define CHECK_STREQ(got, want) check_streq_impl((got), (want), #got, __FILE__, __LINE__)

static int contains(const char *haystack, const char *needle) {
    return haystack != NULL && needle != NULL && strstr(haystack, needle) != NULL;
}

static size_t count_occurrences(const char *haystack, const char *needle) {
    size_t n = 0;
    size_t len = strlen(needle);
    if (haystack == NULL || len == 0) {
        return 0;
    }
    for (const char *p = strstr(haystack, needle); p != NULL; p = strstr(p + len, needle)) {
        n++;
    }
    return n;
}

/* 1 when tms_last_error_message() is non-NULL and non-empty (the message is freed). */
static int last_error_is_set(void) {
    char *msg = tms_last_error_message();
    int set = msg != NULL && msg[0] != '\0';
    tms_string_free(msg);
    return set;
}

/* 1 when tms_last_error_message() is NULL. */
static int last_error_is_clear(void) {
    char *msg = tms_last_error_message();
    int clear = msg == NULL;
    tms_string_free(msg);
    return clear;
}

/* How many jobs `user` has (counted in tms_get_user_jobs's JSON), or -1 on failure. */
static long count_user_jobs(const TmsStore *store, const char *user) {
    char *json = NULL;
    if (tms_get_user_jobs(store, user, 100000, &json) != TMS_STATUS_OK) {
        return -1;
    }
    long n = (long)count_occurrences(json, "\"job_id\":");
    tms_string_free(json);
    return n;
}

static void join_path(char *out, size_t size, const char *dir, const char *name) {
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        exit(2);
    }
}

/* A store of the test's own in tmp, <name>_jobs.db and <name>_audit.db, whose paths go to jobs
 * and audit (PATH_BYTES each); NULL when it did not open (a failure already counted). */
enum { PATH_BYTES = 4096 };
static TmsStore *open_own_store(const char *tmp, const char *name, char *jobs, char *audit) {
    char file[256];
    snprintf(file, sizeof file, "%s_jobs.db", name);
    join_path(jobs, PATH_BYTES, tmp, file);
    snprintf(file, sizeof file, "%s_audit.db", name);
    join_path(audit, PATH_BYTES, tmp, file);
    TmsStore *store = NULL;
    CHECK_OK(tms_store_open(jobs, audit, NULL, &store));
    return store;
}

/* ------------------------------------------------------------------------------------------ */
/* Tests                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void test_static_functions(void) {
    const char *version = tms_version();
    CHECK(version != NULL);
    CHECK(version != NULL && version[0] != '\0');
    /* The header's version macros belong to the library that is loaded: a program compiled
       against one release's header and run against another's library is what they detect. */
    char from_macros[64];
    snprintf(from_macros, sizeof from_macros, "%d.%d.%d", TMS_VERSION_MAJOR, TMS_VERSION_MINOR,
             TMS_VERSION_PATCH);
    CHECK_STREQ(version, from_macros);
    CHECK_STREQ(tms_status_name(TMS_STATUS_NOT_FOUND), "TMS_STATUS_NOT_FOUND");
    CHECK_STREQ(tms_status_name(TMS_STATUS_OK), "TMS_STATUS_OK");
    CHECK_STREQ(tms_status_name(TMS_STATUS_TOKEN_TOO_SHORT), "TMS_STATUS_TOKEN_TOO_SHORT");
    CHECK_STREQ(tms_status_name(TMS_STATUS_IDEMPOTENCY_KEY_REUSED), "TMS_STATUS_IDEMPOTENCY_KEY_REUSED");
    CHECK_STREQ(tms_status_name(TMS_STATUS_AUDIT_KEY_MISMATCH), "TMS_STATUS_AUDIT_KEY_MISMATCH");
    CHECK_STREQ(tms_status_name(TMS_STATUS_AUDIT_CHAIN_BROKEN), "TMS_STATUS_AUDIT_CHAIN_BROKEN");
    CHECK_STREQ(tms_status_name(999), "TMS_STATUS_UNKNOWN");
    CHECK_STREQ(tms_status_name(-1), "TMS_STATUS_UNKNOWN");

    /* NULL is a no-op for both release functions. */
    tms_store_close(NULL);
    tms_string_free(NULL);
    CHECK(1); /* reached: neither crashed */
}

static void test_open(const char *tmp) {
    char jobs[4096], audit[4096], jobs2[4096], audit2[4096];
    join_path(jobs, sizeof jobs, tmp, "jobs.db");
    join_path(audit, sizeof audit, tmp, "audit.db");
    join_path(jobs2, sizeof jobs2, tmp, "opt_jobs.db");
    join_path(audit2, sizeof audit2, tmp, "opt_audit.db");

    TmsStore *store = NULL;
    CHECK_OK(tms_store_open(jobs, audit, NULL, &store));
    CHECK(store != NULL);
    CHECK(last_error_is_clear());
    tms_store_close(store);

    store = NULL;
    CHECK_OK(tms_store_open(jobs2, audit2, "{\"synchronous\":\"NORMAL\"}", &store));
    CHECK(store != NULL);
    if (store != NULL) {
        /* NORMAL asked for is what the store's own connections have. */
        char *text = NULL;
        CHECK_OK(tms_store_metrics(store, &text));
        CHECK(text != NULL && contains(text, "tms_store_setting{setting=\"jobs.synchronous\",value=\"NORMAL\"} 1\n"));
        CHECK(text != NULL && contains(text, "tms_store_setting{setting=\"audit.synchronous\",value=\"NORMAL\"} 1\n"));
        tms_string_free(text);
    }
    tms_store_close(store);

    store = NULL;
    CHECK_STATUS(tms_store_open(jobs2, audit2, "{\"nope\":1}", &store), TMS_STATUS_INVALID_INPUT);
    CHECK(store == NULL);
    CHECK(last_error_is_set());

    store = NULL;
    CHECK_STATUS(tms_store_open(jobs2, audit2, "not json", &store), TMS_STATUS_INVALID_INPUT);
    CHECK(store == NULL);

    /* Every option has a range: values that used to wrap or panic are refused at open. */
    const char *out_of_range[] = {
        "{\"interrupted_after_s\":18446744073709551615}",
        "{\"interrupted_after_s\":9223372036854775808}",
        "{\"busy_timeout_ms\":2147483648}",
        "{\"connect_timeout_s\":18446744073709551615}",
        "{\"max_response_bytes\":0}",
        "{\"audit_hmac_key\":\"short\"}",
    };
    for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++) {
        store = NULL;
        CHECK_STATUS(tms_store_open(jobs2, audit2, out_of_range[i], &store), TMS_STATUS_INVALID_INPUT);
        CHECK(store == NULL);
    }

    char missing_jobs[4096], missing_audit[4096];
    join_path(missing_jobs, sizeof missing_jobs, tmp, "no/such/dir/jobs.db");
    join_path(missing_audit, sizeof missing_audit, tmp, "no/such/dir/audit.db");
    store = NULL;
    CHECK_STATUS(tms_store_open(missing_jobs, missing_audit, NULL, &store), TMS_STATUS_CANT_OPEN);
    CHECK(store == NULL);
    char *msg = tms_last_error_message();
    CHECK(contains(msg, "does not exist"));
    tms_string_free(msg);

    /* "create": false opens existing files only: a missing one is named and nothing is made. */
    char new_jobs[4096], new_audit[4096];
    join_path(new_jobs, sizeof new_jobs, tmp, "create_false_jobs.db");
    join_path(new_audit, sizeof new_audit, tmp, "create_false_audit.db");
    store = NULL;
    CHECK_STATUS(tms_store_open(new_jobs, new_audit, "{\"create\":false}", &store), TMS_STATUS_CANT_OPEN);
    CHECK(store == NULL);
    msg = tms_last_error_message();
    CHECK(contains(msg, "create_false_jobs.db") && contains(msg, "tms init"));
    tms_string_free(msg);
    CHECK(access(new_jobs, F_OK) != 0 && access(new_audit, F_OK) != 0);
    CHECK_STATUS(tms_store_open(new_jobs, new_audit, "{\"create\":0}", &store), TMS_STATUS_INVALID_INPUT);
    CHECK_OK(tms_store_open(jobs, audit, "{\"create\":false}", &store));
    tms_store_close(store);

    store = NULL;
    CHECK_STATUS(tms_store_open(NULL, audit, NULL, &store), TMS_STATUS_NULL_ARGUMENT);
    CHECK(store == NULL);
    CHECK_STATUS(tms_store_open(jobs, audit, NULL, NULL), TMS_STATUS_NULL_ARGUMENT);
}

static void test_map_action(void) {
    int32_t code = 0;
    CHECK_OK(tms_map_action("Trans-Begin", &code));
    CHECK(code == 1);
    code = 0;
    CHECK_OK(tms_map_action("TRANS_BEGIN", &code));
    CHECK(code == 1);
    code = 0;
    CHECK_OK(tms_map_action("trans begin", &code));
    CHECK(code == 1);
    code = 0;
    CHECK_OK(tms_map_action("Tran-Begin", &code));
    CHECK(code == 1);
    code = 0;
    CHECK_OK(tms_map_action("pe-direct", &code));
    CHECK(code == 5);
    CHECK(last_error_is_clear());

    code = -7;
    CHECK_STATUS(tms_map_action("Bogus", &code), TMS_STATUS_UNKNOWN_ACTION);
    CHECK(code == -7);
    CHECK(last_error_is_set());

    code = -7;
    CHECK_STATUS(tms_map_action(NULL, &code), TMS_STATUS_NULL_ARGUMENT);
    CHECK(code == -7);

    code = -7;
    CHECK_STATUS(tms_map_action("\xff\xfe", &code), TMS_STATUS_INVALID_UTF8);
    CHECK(code == -7);
}

/* Creates one job for "c_user", updates it and reads it back. */
static void test_jobs(const TmsStore *store) {
    const char *user = "c_user";
    const char *cids[] = {"c1", "c2", "c1"};
    char *job_id = NULL;
    char *job_json = NULL;

    CHECK_OK(tms_create_job(store, user, 1, "Trans-Begin", cids, 3, "https://cluster.example",
                            "batch-1", "{\"cids\":[\"c1\",\"c2\"]}", NULL, NULL, &job_id,
                            &job_json));
    CHECK(last_error_is_clear());
    CHECK(job_id != NULL);
    CHECK(job_id != NULL && strlen(job_id) == 36);
    CHECK(contains(job_json, "\"customer_count\":2"));
    CHECK(contains(job_json, "\"user_id\":\"c_user\""));
    CHECK(contains(job_json, "\"action_code\":1"));
    tms_string_free(job_json);
    if (job_id == NULL) {
        return;
    }

    char *json = NULL;
    CHECK_OK(tms_get_job_customers(store, job_id, &json));
    CHECK_STREQ(json, "[\"c1\",\"c2\"]");
    tms_string_free(json);

    json = NULL;
    CHECK_OK(tms_get_job(store, job_id, &json));
    CHECK(contains(json, job_id));
    CHECK(contains(json, "IN_PROGRESS"));
    CHECK(contains(json, "\"customer_count\":2"));
    tms_string_free(json);

    int64_t http_status = 200;
    CHECK_OK(tms_update_job(store, job_id, "SUCCESS", &http_status, NULL, "done"));
    CHECK(last_error_is_clear());

    json = NULL;
    CHECK_OK(tms_get_user_jobs(store, user, 50, &json));
    CHECK(contains(json, job_id));
    CHECK(contains(json, "SUCCESS"));
    CHECK(contains(json, "\"http_status\":200"));
    tms_string_free(json);

    CHECK_STATUS(tms_update_job(store, "00000000-0000-4000-8000-000000000000", "SUCCESS",
                                &http_status, NULL, NULL),
                 TMS_STATUS_NOT_FOUND);
    CHECK(last_error_is_set());

    json = NULL;
    CHECK_STATUS(tms_get_job(store, "00000000-0000-4000-8000-000000000000", &json),
                 TMS_STATUS_NOT_FOUND);
    CHECK(json == NULL);
    json = NULL;
    CHECK_STATUS(tms_get_job_customers(store, "00000000-0000-4000-8000-000000000000", &json),
                 TMS_STATUS_NOT_FOUND);
    CHECK(json == NULL);

    CHECK_STATUS(tms_update_job(store, job_id, "DONE", NULL, NULL, NULL), TMS_STATUS_INVALID_INPUT);

    tms_string_free(job_id);
}

/* tms_create_job_packed: IDs in one NUL-separated buffer, the answer in the caller's struct;
 * a refused call leaves the struct as it was. */
static void test_create_job_packed(const TmsStore *store) {
    static const char ids[] = "p1\0p2\0p1"; /* sizeof - 1: the literal's own NUL is not sent */
    TmsCreatedJob out = {0};

    CHECK_OK(tms_create_job_packed(store, "c_packed", 1, "Trans-Begin", ids, sizeof ids - 1, NULL,
                                   NULL, NULL, NULL, NULL, &out));
    CHECK(last_error_is_clear());
    CHECK(strlen(out.job_id) == 36);
    CHECK(strlen(out.created_at) == 26);
    CHECK(out.customer_count == 2);

    char *json = NULL;
    CHECK_OK(tms_get_job_customers(store, out.job_id, &json));
    CHECK_STREQ(json, "[\"p1\",\"p2\"]");
    tms_string_free(json);

    TmsCreatedJob untouched = {.job_id = "untouched", .customer_count = 42};
    CHECK_STATUS(tms_create_job_packed(store, "", 1, "Trans-Begin", ids, sizeof ids - 1, NULL, NULL,
                                       NULL, NULL, NULL, &untouched),
                 TMS_STATUS_INVALID_INPUT);
    CHECK_STREQ(untouched.job_id, "untouched");
    CHECK(untouched.customer_count == 42);
}

/* Every refused tms_create_job leaves the outputs NULL and the job count unchanged. */
static void test_create_job_errors(const TmsStore *store) {
    const char *user = "c_user";
    const char *cids[] = {"c1", "c2", "c1"};
    const char *cids_with_null[] = {"c1", NULL, "c3"};
    long before = count_user_jobs(store, user);
    CHECK(before >= 0);

    char *job_id = NULL;
    char *job_json = NULL;

#define EXPECT_CREATE_FAILS(want, ...)                                                           \
    do {                                                                                          \
        job_id = NULL;                                                                            \
        job_json = NULL;                                                                          \
        CHECK_STATUS(tms_create_job(__VA_ARGS__), want);                                          \
        CHECK(job_id == NULL);                                                                    \
        CHECK(job_json == NULL);                                                                  \
        CHECK(last_error_is_set());                                                               \
    } while (0)

    EXPECT_CREATE_FAILS(TMS_STATUS_NULL_ARGUMENT, NULL, user, 1, "Trans-Begin", cids, 3, NULL,
                        NULL, NULL, NULL, NULL, &job_id, &job_json);
    EXPECT_CREATE_FAILS(TMS_STATUS_NULL_ARGUMENT, store, NULL, 1, "Trans-Begin", cids, 3, NULL,
                        NULL, NULL, NULL, NULL, &job_id, &job_json);
    EXPECT_CREATE_FAILS(TMS_STATUS_INVALID_INPUT, store, "", 1, "Trans-Begin", cids, 3, NULL, NULL,
                        NULL, NULL, NULL, &job_id, &job_json);
    EXPECT_CREATE_FAILS(TMS_STATUS_INVALID_UTF8, store, "bad\xff\xfeuser", 1, "Trans-Begin", cids,
                        3, NULL, NULL, NULL, NULL, NULL, &job_id, &job_json);
    EXPECT_CREATE_FAILS(TMS_STATUS_NULL_ARGUMENT, store, user, 1, "Trans-Begin", cids_with_null, 3,
                        NULL, NULL, NULL, NULL, NULL, &job_id, &job_json);
    EXPECT_CREATE_FAILS(TMS_STATUS_NULL_ARGUMENT, store, user, 1, "Trans-Begin", NULL, 3, NULL,
                        NULL, NULL, NULL, NULL, &job_id, &job_json);
    EXPECT_CREATE_FAILS(TMS_STATUS_INVALID_INPUT, store, user, 0, "Trans-Begin", cids, 3, NULL,
                        NULL, NULL, NULL, NULL, &job_id, &job_json);
    EXPECT_CREATE_FAILS(TMS_STATUS_INVALID_INPUT, store, user, 1, "Trans-Begin", cids, 3, NULL,
                        NULL, "{not json", NULL, NULL, &job_id, &job_json);
    EXPECT_CREATE_FAILS(TMS_STATUS_INVALID_INPUT, store, user, 1, "Trans-Begin", cids, 3, NULL,
                        NULL, NULL, NULL, "DONE", &job_id, &job_json);

    /* out_job_id NULL: refused before anything is written. */
    job_json = NULL;
    CHECK_STATUS(tms_create_job(store, user, 1, "Trans-Begin", cids, 3, NULL, NULL, NULL, NULL,
                                NULL, NULL, &job_json),
                 TMS_STATUS_NULL_ARGUMENT);
    CHECK(job_json == NULL);
    CHECK(last_error_is_set());

    /* 100,001 distinct IDs: one more than allowed. */
    enum { TOO_MANY = 100001 };
    char **big = malloc(sizeof *big * TOO_MANY);
    CHECK(big != NULL);
    if (big != NULL) {
        size_t made = 0;
        for (; made < TOO_MANY; made++) {
            big[made] = malloc(16);
            if (big[made] == NULL) {
                break;
            }
            snprintf(big[made], 16, "cid%07zu", made);
        }
        CHECK(made == TOO_MANY);
        if (made == TOO_MANY) {
            EXPECT_CREATE_FAILS(TMS_STATUS_TOO_LARGE, store, user, 1, "Trans-Begin",
                                (const char *const *)big, TOO_MANY, NULL, NULL, NULL, NULL, NULL,
                                &job_id, &job_json);
        }
        for (size_t i = 0; i < made; i++) {
            free(big[i]);
        }
        free(big);
    }
#undef EXPECT_CREATE_FAILS

    CHECK(count_user_jobs(store, user) == before);

    /* A successful call clears the last error again. */
    job_id = NULL;
    CHECK_OK(tms_create_job(store, user, 5, "PE-Direct", NULL, 0, NULL, NULL, NULL, NULL, "FAILED",
                            &job_id, NULL));
    CHECK(job_id != NULL);
    CHECK(last_error_is_clear());
    CHECK(count_user_jobs(store, user) == before + 1);
    tms_string_free(job_id);
}

static void test_audit(const TmsStore *store) {
    int64_t duration = 1234;
    int64_t first_id = 0;
    int64_t second_id = 0;

    CHECK_OK(tms_record_audit(store, "c_user", "Trans-Begin", "[\"c1\", \"c2\"]", "10.0.0.1", NULL,
                              NULL, &duration, &first_id));
    CHECK(first_id > 0);
    CHECK(last_error_is_clear());

    CHECK_OK(tms_record_audit(store, "other_user", "PE-Enable", "c10, c3", NULL, "failure",
                              "cluster said no", NULL, &second_id));
    CHECK(second_id > first_id);

    /* Whole-ID match: "c1" finds the first row exactly once and not "c10". */
    char *json = NULL;
    CHECK_OK(tms_get_audit_trail(store, NULL, NULL, "c1", 100, &json));
    char needle[64];
    snprintf(needle, sizeof needle, "\"id\":%lld,", (long long)first_id);
    CHECK(count_occurrences(json, needle) == 1);
    CHECK(count_occurrences(json, "\"id\":") == 1);
    CHECK(contains(json, "\"customer_ids\":[\"c1\",\"c2\"]"));
    CHECK(contains(json, "\"ip_address\":\"10.0.0.1\""));
    CHECK(contains(json, "\"duration_ms\":1234"));
    CHECK(contains(json, "\"status\":\"success\""));
    tms_string_free(json);

    json = NULL;
    CHECK_OK(tms_get_audit_trail(store, NULL, NULL, "c", 100, &json));
    CHECK_STREQ(json, "[]");
    tms_string_free(json);

    json = NULL;
    CHECK_OK(tms_get_audit_trail(store, NULL, NULL, "c10", 100, &json));
    snprintf(needle, sizeof needle, "\"id\":%lld,", (long long)second_id);
    CHECK(count_occurrences(json, needle) == 1);
    CHECK(count_occurrences(json, "\"id\":") == 1);
    tms_string_free(json);

    json = NULL;
    CHECK_OK(tms_get_audit_trail(store, NULL, NULL, NULL, 100, &json));
    CHECK(count_occurrences(json, "\"id\":") == 2);
    tms_string_free(json);

    json = NULL;
    CHECK_OK(tms_get_audit_stats(store, &json));
    CHECK(contains(json, "\"total_records\":2"));
    CHECK(contains(json, "\"failed_actions\":1"));
    CHECK(contains(json, "\"successful_actions\":1"));
    tms_string_free(json);

    json = NULL;
    CHECK_OK(tms_get_action_types(store, &json));
    CHECK_STREQ(json, "[\"PE-Enable\",\"Trans-Begin\"]");
    tms_string_free(json);

    int64_t untouched = -1;
    CHECK_STATUS(tms_record_audit(store, "c_user", "Trans-Begin", NULL, NULL, "ok", NULL, NULL,
                                  &untouched),
                 TMS_STATUS_INVALID_INPUT);
    CHECK(untouched == -1);
    CHECK(last_error_is_set());

    json = NULL;
    CHECK_STATUS(tms_get_audit_trail(store, NULL, NULL, NULL, -1, &json), TMS_STATUS_INVALID_INPUT);
    CHECK(json == NULL);

    uint64_t deleted = 0;
    CHECK_OK(tms_clear_audit_logs(store, &deleted));
    CHECK(deleted == 2);

    /* Clearing is a recorded reset: only the audit_reset row remains, and the chain holds. */
    json = NULL;
    CHECK_OK(tms_get_audit_stats(store, &json));
    CHECK(contains(json, "\"total_records\":1"));
    tms_string_free(json);
    json = NULL;
    CHECK_OK(tms_get_action_types(store, &json));
    CHECK_STREQ(json, "[\"audit_reset\"]");
    tms_string_free(json);
    json = NULL;
    CHECK_OK(tms_verify_audit(store, NULL, NULL, &json));
    CHECK(contains(json, "\"ok\":true"));
    tms_string_free(json);
    int64_t seq = 1;
    CHECK_STATUS(tms_verify_audit(store, &seq, NULL, &json), TMS_STATUS_INVALID_INPUT);
}

static void test_cache(const TmsStore *store) {
    CHECK_OK(tms_cache_put(store, "c1", "ALL", "{\"a\":1}", 1800));

    char *json = NULL;
    CHECK_OK(tms_cache_get(store, "c1", "ALL", 1800, &json));
    CHECK_STREQ(json, "{\"a\":1}");
    tms_string_free(json);

    json = NULL;
    CHECK_STATUS(tms_cache_get(store, "missing", "ALL", 1800, &json), TMS_STATUS_NOT_FOUND);
    CHECK(json == NULL);
    CHECK(last_error_is_set());

    CHECK_STATUS(tms_cache_put(store, "c1", "ALL", "{not json", 1800), TMS_STATUS_INVALID_INPUT);

    const char *batch_cids[] = {"c1", "c2", "c1"};
    json = NULL;
    CHECK_OK(tms_cache_get_batch(store, batch_cids, 3, "ALL", 1800, &json));
    CHECK(contains(json, "\"hits\":{\"c1\":{\"a\":1}}"));
    CHECK(contains(json, "\"misses\":[\"c2\"]"));
    CHECK(contains(json, "\"hit_count\":1"));
    CHECK(contains(json, "\"miss_count\":1"));
    tms_string_free(json);

    json = NULL;
    CHECK_OK(tms_cache_stats(store, &json));
    CHECK(contains(json, "\"total_entries\":1"));
    CHECK(contains(json, "\"unique_cids\":1"));
    tms_string_free(json);

    uint64_t deleted = 99;
    CHECK_OK(tms_cache_cleanup(store, 1800, &deleted));
    CHECK(deleted == 0);

    deleted = 0;
    CHECK_OK(tms_cache_invalidate(store, NULL, NULL, &deleted));
    CHECK(deleted == 1);

    json = NULL;
    CHECK_STATUS(tms_cache_get(store, "c1", "ALL", 1800, &json), TMS_STATUS_NOT_FOUND);
    CHECK(json == NULL);
}

static void test_parse_customer_ids(void) {
    char *json = NULL;
    CHECK_OK(tms_parse_customer_ids("a\nb,a", TMS_INPUT_MANUAL, &json));
    CHECK_STREQ(json, "[\"a\",\"b\"]");
    tms_string_free(json);

    json = NULL;
    CHECK_OK(tms_parse_customer_ids("customer_id,name\r\n x1 ,Foo\r\n\"x2\",Bar\r\nx1,Again\r\n",
                                    TMS_INPUT_CSV, &json));
    CHECK_STREQ(json, "[\"x1\",\"x2\"]");
    tms_string_free(json);

    json = NULL;
    CHECK_STATUS(tms_parse_customer_ids("a", 7, &json), TMS_STATUS_INVALID_INPUT);
    CHECK(json == NULL);
    CHECK(last_error_is_set());

    json = NULL;
    CHECK_STATUS(tms_parse_customer_ids("a\x01" "b", TMS_INPUT_MANUAL, &json),
                 TMS_STATUS_INVALID_INPUT);
    CHECK(json == NULL);

    json = NULL;
    CHECK_STATUS(tms_parse_customer_ids(NULL, TMS_INPUT_MANUAL, &json), TMS_STATUS_NULL_ARGUMENT);
    CHECK(json == NULL);
}

static void test_legacy(const char *fixture_dir) {
    char jobs[4096], audit[4096];
    join_path(jobs, sizeof jobs, fixture_dir, "jobs.db");
    join_path(audit, sizeof audit, fixture_dir, "audit.db");

    TmsStore *store = NULL;
    CHECK_OK(tms_store_open(jobs, audit, NULL, &store));
    CHECK(store != NULL);
    if (store == NULL) {
        return;
    }

    char *json = NULL;
    CHECK_OK(tms_get_user_jobs(store, "test_user_001", 100, &json));
    CHECK(json != NULL && strcmp(json, "[]") != 0);
    CHECK(contains(json, "\"user_id\":\"test_user_001\""));
    tms_string_free(json);

    long before = count_user_jobs(store, "test_user_001");
    CHECK(before > 0);

    const char *cids[] = {"legacy-c1", "legacy-c2"};
    char *job_id = NULL;
    CHECK_OK(tms_create_job(store, "test_user_001", 2, "PE-Enable", cids, 2, NULL, NULL, NULL,
                            NULL, NULL, &job_id, NULL));
    CHECK(job_id != NULL && strlen(job_id) == 36);
    CHECK(count_user_jobs(store, "test_user_001") == before + 1);

    json = NULL;
    if (job_id != NULL) {
        CHECK_OK(tms_get_job_customers(store, job_id, &json));
        CHECK_STREQ(json, "[\"legacy-c1\",\"legacy-c2\"]");
        tms_string_free(json);
    }
    tms_string_free(job_id);

    json = NULL;
    CHECK_OK(tms_get_audit_stats(store, &json));
    CHECK(json != NULL && !contains(json, "\"total_records\":0"));
    tms_string_free(json);

    int64_t audit_id = 0;
    CHECK_OK(tms_record_audit(store, "test_user_001", "PE-Enable", "[\"legacy-c1\"]", NULL, NULL,
                              NULL, NULL, &audit_id));
    CHECK(audit_id > 0);

    tms_store_close(store);
}

/* ------------------------------------------------------------------------------------------ */
/* Threads                                                                                    */
/* ------------------------------------------------------------------------------------------ */

enum { THREADS = 4, JOBS_PER_THREAD = 50 };

struct worker {
    const TmsStore *store;
    int index;
    int succeeded;
    int failed;
};

static void *worker_main(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < JOBS_PER_THREAD; i++) {
        char cid_a[32], cid_b[32];
        snprintf(cid_a, sizeof cid_a, "t%d-%d-a", w->index, i);
        snprintf(cid_b, sizeof cid_b, "t%d-%d-b", w->index, i);
        const char *cids[] = {cid_a, cid_b};
        char *job_id = NULL;
        TmsStatus st = tms_create_job(w->store, "thread_user", 3, "T-Enable", cids, 2, NULL, NULL,
                                      NULL, NULL, NULL, &job_id, NULL);
        if (st == TMS_STATUS_OK && job_id != NULL && strlen(job_id) == 36) {
            w->succeeded++;
        } else {
            w->failed++;
            char *msg = tms_last_error_message();
            fprintf(stderr, "thread %d job %d: %s: %s\n", w->index, i, tms_status_name(st),
                    msg ? msg : "(none)");
            tms_string_free(msg);
        }
        tms_string_free(job_id);
    }
    return NULL;
}

static void test_threads(const TmsStore *store) {
    pthread_t threads[THREADS];
    struct worker workers[THREADS];
    int started[THREADS];
    for (int t = 0; t < THREADS; t++) {
        workers[t] = (struct worker){.store = store, .index = t, .succeeded = 0, .failed = 0};
        started[t] = pthread_create(&threads[t], NULL, worker_main, &workers[t]) == 0;
        CHECK(started[t]);
    }
    int succeeded = 0;
    int failed = 0;
    for (int t = 0; t < THREADS; t++) {
        if (started[t]) {
            CHECK(pthread_join(threads[t], NULL) == 0);
            succeeded += workers[t].succeeded;
            failed += workers[t].failed;
        }
    }
    CHECK(succeeded == THREADS * JOBS_PER_THREAD);
    CHECK(failed == 0);
    CHECK(count_user_jobs(store, "thread_user") == THREADS * JOBS_PER_THREAD);
}

/* Rolling back to the legacy code and forward: the legacy app's plain INSERT after the chain's
 * head fails verification until tms_adopt_unchained adopts it. */
static void test_adopt_unchained(const char *tmp) {
    char jobs[PATH_BYTES], audit[PATH_BYTES];
    TmsStore *store = open_own_store(tmp, "adopt", jobs, audit);
    if (store == NULL) {
        return;
    }
    CHECK_OK(tms_record_audit(store, "c_user", "Trans-Begin", NULL, NULL, NULL, NULL, NULL, NULL));

    char *json = NULL;
    CHECK_STATUS(tms_adopt_unchained(store, "INC-5", &json), TMS_STATUS_NOT_FOUND);
    CHECK(json == NULL); /* outputs are written only on success */
    CHECK(last_error_is_set());
    CHECK_STATUS(tms_adopt_unchained(store, NULL, &json), TMS_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(tms_adopt_unchained(store, "INC-5", NULL), TMS_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(tms_adopt_unchained(NULL, "INC-5", &json), TMS_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(tms_adopt_unchained(store, "\xff", &json), TMS_STATUS_INVALID_UTF8);
    CHECK_STATUS(tms_adopt_unchained(store, " ", &json), TMS_STATUS_INVALID_INPUT);
    CHECK(json == NULL);

    /* The legacy writer, as the legacy Python did it: no chain columns. */
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(audit, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "INSERT INTO audit_log (user_id, action_type, status) VALUES ('legacy', 'PE-Enable', 'success')",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);

    CHECK_OK(tms_verify_audit(store, NULL, NULL, &json));
    CHECK(json != NULL && contains(json, "\"ok\":false") && contains(json, "\"problem\":\"inserted\""));
    tms_string_free(json);
    json = NULL;

    CHECK_OK(tms_adopt_unchained(store, "INC-5 rollback", &json));
    CHECK(json != NULL && contains(json, "\"adopted\":1") && contains(json, "\"ids\":\"2\"") &&
          contains(json, "\"marker_seq\":2"));
    tms_string_free(json);
    json = NULL;
    CHECK_OK(tms_verify_audit(store, NULL, NULL, &json));
    CHECK(json != NULL && contains(json, "\"ok\":true") && contains(json, "\"adopted\":1"));
    tms_string_free(json);
    json = NULL;
    CHECK_STATUS(tms_adopt_unchained(store, "INC-5 again", &json), TMS_STATUS_NOT_FOUND);
    CHECK(json == NULL);
    tms_store_close(store);
}

/* Signed checkpoints: a fixed test key pair (from `tms keygen --name audit.c-test`; a test key,
 * never used anywhere else) and a second public key of the same name. */
static const char CHECKPOINT_PRIVATE[] =
    "PRIVATE+KEY+audit.c-test+5e15e5a8+MFECAQEwBQYDK2VwBCIEIB1PUGT48gfvGUgCbehffIATA3IkqNNAZfgVuXEKSydsgSEApbZv0B2hpkHUUJuqfuJlxLuaYPWSoGYvvIYaIwKtc2c=\n";
static const char CHECKPOINT_PUBLIC[] = "audit.c-test+5e15e5a8+AaW2b9AdoaZB1FCbqn7iZcS7mmD1kqBmL7yGGiMCrXNn\n";
static const char CHECKPOINT_OTHER_PUBLIC[] = "audit.c-test+40f017f7+AV1/noFxLvpPlbR05QvAOe7SHI9o26hYRjnOBkEZUsnY\n";

static void exec_sql(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
}

/* The verification of `checkpoint` as JSON (caller frees), or NULL with `*status` set. */
static char *verify_checkpoint(const TmsStore *store, const char *checkpoint, const char *public_key, int *status) {
    char *json = NULL;
    *status = tms_verify_audit_checkpoint(store, checkpoint, public_key, &json);
    return json;
}

static void test_checkpoints(const char *tmp) {
    char jobs[PATH_BYTES], audit[PATH_BYTES];
    TmsStore *store = open_own_store(tmp, "cp", jobs, audit);
    if (store == NULL) {
        return;
    }
    char *cp = NULL;
    /* Nothing chained yet: nothing to sign; the output stays untouched. */
    CHECK_STATUS(tms_audit_checkpoint(store, CHECKPOINT_PRIVATE, NULL, &cp), TMS_STATUS_NOT_FOUND);
    CHECK(cp == NULL);
    for (int i = 0; i < 3; i++) {
        CHECK_OK(tms_record_audit(store, "c_user", "Trans-Begin", NULL, NULL, NULL, NULL, NULL, NULL));
    }
    CHECK_STATUS(tms_audit_checkpoint(NULL, CHECKPOINT_PRIVATE, NULL, &cp), TMS_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(tms_audit_checkpoint(store, NULL, NULL, &cp), TMS_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(tms_audit_checkpoint(store, CHECKPOINT_PRIVATE, NULL, NULL), TMS_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(tms_audit_checkpoint(store, "\xff", NULL, &cp), TMS_STATUS_INVALID_UTF8);
    CHECK_STATUS(tms_audit_checkpoint(store, CHECKPOINT_PUBLIC, NULL, &cp), TMS_STATUS_INVALID_INPUT);
    CHECK(cp == NULL);
    /* The secret is never in the error message. */
    char *msg = tms_last_error_message();
    CHECK(msg != NULL && !contains(msg, "MFECAQEw") && !contains(msg, "audit.c-test+5e15e5a8+Aa"));
    tms_string_free(msg);

    CHECK_OK(tms_audit_checkpoint(store, CHECKPOINT_PRIVATE, NULL, &cp));
    CHECK(cp != NULL && strncmp(cp, "audit.c-test\n3\nsha256:", 22) == 0 && contains(cp, "\ntime ") &&
          contains(cp, "\n\n\xe2\x80\x94 audit.c-test "));
    if (cp == NULL) {
        tms_store_close(store);
        return;
    }
    int st = 0;
    char *json = verify_checkpoint(store, cp, CHECKPOINT_PUBLIC, &st);
    CHECK_STATUS(st, TMS_STATUS_OK);
    CHECK(json != NULL && contains(json, "\"ok\":true") && contains(json, "\"checkpoint\":{\"origin\":\"audit.c-test\",\"seq\":3"));
    tms_string_free(json);

    /* A log that grew since passes. */
    CHECK_OK(tms_record_audit(store, "c_user", "PE-Enable", NULL, NULL, NULL, NULL, NULL, NULL));
    json = verify_checkpoint(store, cp, CHECKPOINT_PUBLIC, &st);
    CHECK(st == TMS_STATUS_OK && json != NULL && contains(json, "\"ok\":true") && contains(json, "\"checked\":4"));
    tms_string_free(json);

    /* The next checkpoint, signed only for a log that still extends this one. */
    char *next = NULL;
    CHECK_STATUS(tms_audit_checkpoint(store, CHECKPOINT_PRIVATE, "\xff", &next), TMS_STATUS_INVALID_UTF8);
    CHECK_STATUS(tms_audit_checkpoint(store, CHECKPOINT_PRIVATE, "audit.c-test\n3\n", &next), TMS_STATUS_CHECKPOINT_INVALID);
    CHECK(next == NULL);
    CHECK_OK(tms_audit_checkpoint(store, CHECKPOINT_PRIVATE, cp, &next));
    CHECK(next != NULL && strncmp(next, "audit.c-test\n4\n", 15) == 0);
    tms_string_free(next);
    next = NULL;

    /* Bad arguments, another key, a forged or malformed checkpoint: no output. */
    json = NULL;
    CHECK_STATUS(tms_verify_audit_checkpoint(NULL, cp, CHECKPOINT_PUBLIC, &json), TMS_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(tms_verify_audit_checkpoint(store, NULL, CHECKPOINT_PUBLIC, &json), TMS_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(tms_verify_audit_checkpoint(store, cp, NULL, &json), TMS_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(tms_verify_audit_checkpoint(store, cp, CHECKPOINT_PUBLIC, NULL), TMS_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(tms_verify_audit_checkpoint(store, "\xff", CHECKPOINT_PUBLIC, &json), TMS_STATUS_INVALID_UTF8);
    CHECK_STATUS(tms_verify_audit_checkpoint(store, cp, "not a key", &json), TMS_STATUS_INVALID_INPUT);
    CHECK_STATUS(tms_verify_audit_checkpoint(store, cp, CHECKPOINT_OTHER_PUBLIC, &json), TMS_STATUS_CHECKPOINT_INVALID);
    CHECK_STATUS(tms_verify_audit_checkpoint(store, "audit.c-test\n3\n", CHECKPOINT_PUBLIC, &json), TMS_STATUS_CHECKPOINT_INVALID);
    size_t n = strlen(cp);
    char *forged = malloc(n + 1);
    if (forged != NULL) {
        memcpy(forged, cp, n + 1);
        forged[13] = '2'; /* the seq line: "audit.c-test\n3\n" */
        CHECK_STATUS(tms_verify_audit_checkpoint(store, forged, CHECKPOINT_PUBLIC, &json), TMS_STATUS_CHECKPOINT_INVALID);
        free(forged);
    }
    CHECK(json == NULL);

    /* A row before the checkpoint changed: not ok, and no new checkpoint is signed. */
    exec_sql(audit, "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET status = 'failure' WHERE chain_seq = 2");
    json = verify_checkpoint(store, cp, CHECKPOINT_PUBLIC, &st);
    CHECK(st == TMS_STATUS_OK && json != NULL && contains(json, "\"ok\":false") && contains(json, "\"problem\":\"altered\""));
    tms_string_free(json);
    char *cp2 = NULL;
    CHECK_STATUS(tms_audit_checkpoint(store, CHECKPOINT_PRIVATE, NULL, &cp2), TMS_STATUS_AUDIT_CHAIN_BROKEN);
    CHECK(cp2 == NULL);
    exec_sql(audit, "UPDATE audit_log SET status = 'success' WHERE chain_seq = 2");

    /* Rows cut from the end, past the checkpoint. */
    exec_sql(audit, "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE chain_seq >= 3");
    json = verify_checkpoint(store, cp, CHECKPOINT_PUBLIC, &st);
    CHECK(st == TMS_STATUS_OK && json != NULL && contains(json, "\"ok\":false") && contains(json, "\"problem\":\"cut\""));
    tms_string_free(json);
    CHECK_STATUS(tms_audit_checkpoint(store, CHECKPOINT_PRIVATE, cp, &next), TMS_STATUS_AUDIT_CHAIN_BROKEN);
    CHECK(next == NULL);

    tms_string_free(cp);
    tms_store_close(store);
}

/* The metrics text: Prometheus exposition format, the gauges read from the store. */
static void test_metrics(const TmsStore *store) {
    char *text = NULL;
    CHECK_STATUS(tms_store_metrics(NULL, &text), TMS_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(tms_store_metrics(store, NULL), TMS_STATUS_NULL_ARGUMENT);
    CHECK(text == NULL);
    CHECK_OK(tms_store_metrics(store, &text));
    CHECK(text != NULL);
    if (text == NULL) {
        return;
    }
    CHECK(contains(text, "# TYPE tms_jobs gauge\n"));
    CHECK(contains(text, "# TYPE tms_set_actions_total counter\n"));
    CHECK(contains(text, "tms_set_actions_total{outcome=\"refused\"} "));
    CHECK(contains(text, "# TYPE tms_set_action_duration_seconds histogram\n"));
    CHECK(contains(text, "tms_set_action_duration_seconds_bucket{le=\"+Inf\"} "));
    CHECK(contains(text, "tms_audit_outbox_pending 0\n"));
    /* The durability default (the store was opened with NULL options), as the store's own
       connections have it. */
    CHECK(contains(text, "tms_store_setting{setting=\"jobs.synchronous\",value=\"FULL\"} 1\n"));
    CHECK(contains(text, "tms_store_setting{setting=\"audit.synchronous\",value=\"FULL\"} 1\n"));
    CHECK(contains(text, "tms_store_setting{setting=\"jobs.journal_mode\",value=\"wal\"} 1\n"));
    CHECK(contains(text, "tms_store_setting{setting=\"audit.journal_mode\",value=\"wal\"} 1\n"));
    /* The audit rows as tms_get_audit_stats counts them. */
    char *stats = NULL;
    CHECK_OK(tms_get_audit_stats(store, &stats));
    if (stats != NULL) {
        const char *total = strstr(stats, "\"total_records\":");
        char expected[64];
        snprintf(expected, sizeof expected, "tms_audit_rows %ld\n", total ? strtol(total + 16, NULL, 10) : -1L);
        CHECK(contains(text, expected));
        tms_string_free(stats);
    }
    tms_string_free(text);
}

/* ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s <fresh-temp-dir> [<legacy-fixture-dir>]\n", argv[0]);
        return 2;
    }
    const char *tmp = argv[1];

    test_static_functions();
    test_open(tmp);
    test_map_action();
    test_parse_customer_ids();

    char jobs[4096], audit[4096];
    join_path(jobs, sizeof jobs, tmp, "jobs.db");
    join_path(audit, sizeof audit, tmp, "audit.db");
    TmsStore *store = NULL;
    CHECK_OK(tms_store_open(jobs, audit, NULL, &store));
    if (store != NULL) {
        test_jobs(store);
        test_create_job_errors(store);
        test_create_job_packed(store);
        test_audit(store);
        test_cache(store);
        test_threads(store);
        test_metrics(store);
        tms_store_close(store);
    }
    test_adopt_unchained(tmp);
    test_checkpoints(tmp);

    if (argc >= 3) {
        test_legacy(argv[2]);
    } else {
        fprintf(stderr, "note: no legacy fixture directory given; legacy adoption not tested\n");
    }

    printf("c: %d passed, %d failed\n", g_passed, g_failed);
    fflush(stdout);
    return g_failed == 0 ? 0 : 1;
}
