"""The same operations done well in plain Python: one persistent connection per file,
BEGIN IMMEDIATE, executemany, and the stored customer count for listings.

create_job is the speed issue's careful implementation, writing exactly the rows libtms's
create_job writes: the same columns (customer_count and touched_unix_ms included, the others
NULL), IDs trimmed with empty ones dropped and repeats collapsed keeping the first
(dict.fromkeys), the request payload as JSON text. It does less than libtms: no validation of
IDs or names, and no foreign-key check on job_customers (libtms runs with foreign_keys=ON), so
the comparison leans its way."""

import json
import sqlite3
import time
import uuid
from datetime import datetime


class StrongStore:
    def __init__(self, jobs_db, audit_db, sync):
        self.jobs = self._open(jobs_db, sync)
        self.audit = self._open(audit_db, sync)

    @staticmethod
    def _open(path, sync):
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync}")
        return conn

    def create_job(self, user_id, action_code, action_name, cids, request_payload=None):
        cids = list(dict.fromkeys(x for x in (c.strip() for c in cids) if x))
        job_id = str(uuid.uuid4())
        now = time.time()
        created_at = datetime.fromtimestamp(now).isoformat()
        payload = None if request_payload is None else json.dumps(request_payload)
        c = self.jobs
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("INSERT INTO jobs (job_id, user_id, action_code, action_name, created_at, request_payload, "
                      "status, updated_at, customer_count, touched_unix_ms) "
                      "VALUES (?,?,?,?,?,?,'IN_PROGRESS',?,?,?)",
                      (job_id, user_id, action_code, action_name, created_at, payload, created_at, len(cids),
                       int(now * 1000)))
            c.executemany("INSERT INTO job_customers (job_id, cid) VALUES (?, ?)", [(job_id, x) for x in cids])
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return {"job_id": job_id, "user_id": user_id, "action_code": action_code, "action_name": action_name,
                "customer_count": len(cids), "created_at": created_at}

    def update_job(self, job_id, status, http_status=None):
        self.jobs.execute("BEGIN IMMEDIATE")
        self.jobs.execute("UPDATE jobs SET status = ?, http_status = COALESCE(?, http_status), updated_at = ? "
                          "WHERE job_id = ?", (status, http_status, datetime.now().isoformat(), job_id))
        self.jobs.execute("COMMIT")

    def log_action(self, user_id, action_type, customer_ids):
        self.audit.execute("BEGIN IMMEDIATE")
        cur = self.audit.execute("INSERT INTO audit_log (user_id, action_type, customer_ids, status) "
                                 "VALUES (?,?,?,'success')", (user_id, action_type, json.dumps(customer_ids)))
        self.audit.execute("COMMIT")
        return cur.lastrowid

    def get_user_jobs(self, user_id, limit=50):
        return self.jobs.execute(
            "SELECT job_id, user_id, action_code, action_name, cluster_url, created_at, status, http_status, "
            "error_message, customer_count FROM jobs WHERE user_id = ? ORDER BY created_at DESC LIMIT ?",
            (user_id, limit)).fetchall()

    def get_job_customers(self, job_id):
        return [r[0] for r in self.jobs.execute("SELECT cid FROM job_customers WHERE job_id = ? ORDER BY cid", (job_id,))]
