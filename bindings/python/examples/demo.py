"""The main job, end to end on the default paths (jobs.db and audit.db in the current directory):
the bookkeeping of one Set Action as the dashboard does it, through the drop-in modules.

Run it with `make demo` from the repository root.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tms  # noqa: E402
from tms import audit_db, jobs  # noqa: E402


def show(title, value):
    print(f"\n== {title}")
    print(json.dumps(value, indent=2))


def main():
    print(f"libtms {tms.version()}: jobs in {os.path.abspath(jobs.DB_PATH)}, "
          f"audit in {os.path.abspath(audit_db.AUDIT_DB_PATH)}")
    jobs.initialize_jobs_database()
    audit_db.initialize_database()

    pasted = "948ef156c19511f08f342664b3b9825e\nabc123def456789012345678, 948ef156c19511f08f342664b3b9825e"
    cids = tms.parse_customer_ids(pasted)
    action = "Tran-Begin"
    code = jobs.get_action_code(action)
    show("parsed customer IDs (the repeated one collapsed)", cids)

    # 1. The job exists, durably, before anything is sent.
    job = jobs.create_job("demo_operator", code, action, cids,
                          cluster_url="https://cluster.example/tms/v1/set/action",
                          request_payload={"action": action, "cids": cids},
                          response_summary="In progress...")
    show("job created IN_PROGRESS", job)

    # 2. (The remote call happens here.) 3. Its answer is recorded on the job and in the audit log.
    answer = {"success": True, "message": "Action completed"}
    jobs.update_job(job["job_id"], "SUCCESS", http_status=200, response_summary=answer)
    audit_db.log_action("demo_operator", action, cids, "127.0.0.1", "success", duration_ms=42)

    show("the operator's jobs, newest first", jobs.get_user_jobs("demo_operator", limit=3))
    show("audit trail for one customer (whole-ID match)",
         audit_db.get_customer_actions("948ef156c19511f08f342664b3b9825e", limit=3))
    show("audit stats", audit_db.get_audit_stats())

    # Bad input gets a clear error, and nothing is written.
    store = tms.Store(jobs.DB_PATH, audit_db.AUDIT_DB_PATH)
    for label, call in [
        ("empty user id", lambda: store.create_job("", code, action, cids)),
        ("unknown action", lambda: tms.map_action("Trans-Beginn")),
        ("control character in an ID", lambda: store.create_job("demo_operator", code, action, ["ok", "bad\x07"])),
    ]:
        try:
            call()
        except tms.TmsError as e:
            print(f"\n{label}: {type(e).__name__} (status {e.status}): {e}")
    store.close()


if __name__ == "__main__":
    main()
