"""Exercise every binding call that hands a library-allocated string to Python (results, JSON,
error messages), many times, so a leak of those strings would show under valgrind."""

import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "python"))
import tms  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 50
# A test key pair for signed checkpoints (the C test's; never used anywhere else).
CHECKPOINT_PRIVATE = ("PRIVATE+KEY+audit.c-test+5e15e5a8+MFECAQEwBQYDK2VwBCIEIB1PUGT48gfvGUgCbehffIATA3IkqNNAZfgVuXEKSydsg"
                      "SEApbZv0B2hpkHUUJuqfuJlxLuaYPWSoGYvvIYaIwKtc2c=\n")
CHECKPOINT_PUBLIC = "audit.c-test+5e15e5a8+AaW2b9AdoaZB1FCbqn7iZcS7mmD1kqBmL7yGGiMCrXNn\n"

d = tempfile.mkdtemp()
s = tms.Store(os.path.join(d, "jobs.db"), os.path.join(d, "audit.db"), synchronous="NORMAL")
for i in range(ROUNDS):
    job = s.create_job("u", 1, "Trans-Begin", [f"c{i}", "c0"])
    s.get_job(job["job_id"])
    s.get_user_jobs("u", 5)
    s.get_job_customers(job["job_id"])
    s.record_audit("u", "Trans-Begin", ["c1"])
    s.audit_trail(limit=5, customer_id="c1")
    s.audit_stats()
    s.action_types()
    s.cache_put("c1", {"i": i})
    s.cache_get("c1")
    s.cache_get_batch(["c1", "c2"])
    s.cache_stats()
    s.verify_audit()
    checkpoint = s.audit_checkpoint(CHECKPOINT_PRIVATE)
    s.verify_audit_checkpoint(checkpoint, CHECKPOINT_PUBLIC)
    tms.parse_customer_ids("a\nb,a")
    tms.map_action("Trans-Begin")
    s.set_action({"url": "http://127.0.0.1:9/x", "postData": {"action": "PE-Enable", "cids": ["c1"]}}, "u")
    for bad in (lambda: s.create_job("", 1, "x", []), lambda: s.get_job("missing"), lambda: tms.map_action("nope"),
                lambda: s.verify_audit_checkpoint("forged\n", CHECKPOINT_PUBLIC)):
        try:
            bad()
        except tms.TmsError:
            pass
s.close()
print("rounds", ROUNDS)
