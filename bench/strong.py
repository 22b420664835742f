"""The same operations done well in plain Python: one persistent connection per file,
BEGIN IMMEDIATE, executemany, and the stored customer count for listings."""

import json
import sqlite3
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
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def create_job(self, user_id, action_code, action_name, cids):
        cids = list(dict.fromkeys(c.strip() for c in cids if c.strip()))
        job_id = str(uuid.uuid4())
        created_at = datetime.now().isoformat()
        c = self.jobs
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("INSERT INTO jobs (job_id, user_id, action_code, action_name, created_at, status, "
                      "updated_at, customer_count) VALUES (?,?,?,?,?,'IN_PROGRESS',?,?)",
                      (job_id, user_id, action_code, action_name, created_at, created_at, len(cids)))
            c.executemany("INSERT INTO job_customers (job_id, cid) VALUES (?, ?)", ((job_id, x) for x in cids))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return {"job_id": job_id, "customer_count": len(cids), "created_at": created_at}

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
