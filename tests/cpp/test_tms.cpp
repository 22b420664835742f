// test_tms.cpp: C++17 consumer test of libtms. Including "tms.h" unmodified from C++ and linking
// checks the header's extern "C" guards; RAII wrappers check that ownership maps cleanly onto
// std::unique_ptr.
//
// Usage: test_tms_cpp <fresh-temp-dir>
// The last line printed is "cpp: N passed, M failed"; the exit status is non-zero on any failure.

#include "tms.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

namespace {

struct StoreCloser {
    void operator()(TmsStore *store) const noexcept { tms_store_close(store); }
};
struct StringFreer {
    void operator()(char *s) const noexcept { tms_string_free(s); }
};

using StorePtr = std::unique_ptr<TmsStore, StoreCloser>;
using StringPtr = std::unique_ptr<char, StringFreer>;

int g_passed = 0;
int g_failed = 0;

void check_impl(bool ok, const char *expr, const char *file, int line) {
    if (ok) {
        ++g_passed;
        return;
    }
    ++g_failed;
    StringPtr msg(tms_last_error_message());
    std::fprintf(stderr, "%s:%d: CHECK failed: %s\n    last error: %s\n", file, line, expr,
                 msg ? msg.get() : "(none)");
}

#define CHECK(cond) check_impl(static_cast<bool>(cond), #cond, __FILE__, __LINE__)

bool contains(const StringPtr &s, const char *needle) {
    return s && std::strstr(s.get(), needle) != nullptr;
}

// Open a store; an empty pointer on failure.
StorePtr open_store(const std::string &dir) {
    const std::string jobs = dir + "/cpp_jobs.db";
    const std::string audit = dir + "/cpp_audit.db";
    TmsStore *raw = nullptr;
    const TmsStatus st = tms_store_open(jobs.c_str(), audit.c_str(), nullptr, &raw);
    CHECK(st == TMS_STATUS_OK);
    return StorePtr(raw);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s <fresh-temp-dir>\n", argv[0]);
        return 2;
    }

    CHECK(tms_version() != nullptr);
    CHECK(std::string(tms_status_name(TMS_STATUS_UNKNOWN_ACTION)) == "TMS_STATUS_UNKNOWN_ACTION");

    {
        StorePtr store = open_store(argv[1]);
        CHECK(store != nullptr);
        if (store) {
            // Create a job from an action name mapped by the library.
            std::int32_t code = 0;
            CHECK(tms_map_action("PE-Finalize", &code) == TMS_STATUS_OK);
            CHECK(code == 4);

            const char *cids[] = {"cpp-1", " cpp-2 ", "cpp-1"};
            char *raw_id = nullptr;
            char *raw_json = nullptr;
            const TmsStatus st =
                tms_create_job(store.get(), "cpp_user", code, "PE-Finalize", cids, 3, nullptr,
                               nullptr, "{\"source\":\"cpp\"}", nullptr, nullptr, &raw_id, &raw_json);
            StringPtr job_id(raw_id);
            StringPtr job_json(raw_json);
            CHECK(st == TMS_STATUS_OK);
            CHECK(job_id && std::strlen(job_id.get()) == 36);
            CHECK(contains(job_json, "\"customer_count\":2"));

            if (job_id) {
                // Read it back.
                char *raw = nullptr;
                CHECK(tms_get_job(store.get(), job_id.get(), &raw) == TMS_STATUS_OK);
                StringPtr job(raw);
                CHECK(contains(job, job_id.get()));
                CHECK(contains(job, "\"request_payload\":{\"source\":\"cpp\"}"));
                CHECK(contains(job, "IN_PROGRESS"));

                raw = nullptr;
                CHECK(tms_get_job_customers(store.get(), job_id.get(), &raw) == TMS_STATUS_OK);
                StringPtr customers(raw);
                CHECK(customers && std::string(customers.get()) == "[\"cpp-1\",\"cpp-2\"]");
            }

            // Record an audit row and see it in the trail.
            const std::int64_t duration = 42;
            std::int64_t audit_id = 0;
            CHECK(tms_record_audit(store.get(), "cpp_user", "PE-Finalize", "[\"cpp-1\", \"cpp-2\"]",
                                   "127.0.0.1", nullptr, nullptr, &duration,
                                   &audit_id) == TMS_STATUS_OK);
            CHECK(audit_id > 0);
            char *raw_trail = nullptr;
            CHECK(tms_get_audit_trail(store.get(), "cpp_user", nullptr, "cpp-2", 10, &raw_trail) ==
                  TMS_STATUS_OK);
            StringPtr trail(raw_trail);
            CHECK(contains(trail, "\"action_type\":\"PE-Finalize\""));

            // A success leaves no last error.
            CHECK(StringPtr(tms_last_error_message()) == nullptr);
        }
    }  // the store is closed here by StoreCloser

    // Error path: an unknown action leaves the output untouched and explains itself.
    std::int32_t code = -7;
    CHECK(tms_map_action("Bogus", &code) == TMS_STATUS_UNKNOWN_ACTION);
    CHECK(code == -7);
    StringPtr msg(tms_last_error_message());
    CHECK(msg != nullptr);
    CHECK(contains(msg, "Bogus"));

    std::printf("cpp: %d passed, %d failed\n", g_passed, g_failed);
    std::fflush(stdout);
    return g_failed == 0 ? 0 : 1;
}
