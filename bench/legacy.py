"""The legacy dashboard's persistence, re-implemented faithfully for the benchmark: a new
connection per call with the legacy pragmas, one execute per customer row, plain sqlite3."""

import json
import sqlite3
import uuid
from datetime import datetime


def connect(path, sync):
    conn = sqlite3.connect(path, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA cache_size=-64000")
    conn.execute("PRAGMA mmap_size=268435456")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.row_factory = sqlite3.Row
    return conn


def create_job(db, sync, user_id, action_code, action_name, cids, cluster_url=None, batch_id=None,
               request_payload=None, response_summary=None, status="IN_PROGRESS"):
    conn = connect(db, sync)
    try:
        job_id = str(uuid.uuid4())
        created_at = datetime.now().isoformat()
        cur = conn.cursor()
        cur.execute(
            "INSERT INTO jobs (job_id, user_id, batch_id, action_code, action_name, cluster_url, "
            "created_at, request_payload, response_summary, status) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at,
             json.dumps(request_payload) if request_payload else None, response_summary, status))
        for cid in cids:
            cur.execute("INSERT INTO job_customers (job_id, cid) VALUES (?, ?)", (job_id, cid))
        conn.commit()
        return {"job_id": job_id, "user_id": user_id, "action_code": action_code,
                "action_name": action_name, "customer_count": len(cids), "created_at": created_at}
    finally:
        conn.close()


def update_job(db, sync, job_id, status, http_status=None, error_message=None, response_summary=None):
    conn = connect(db, sync)
    try:
        fields, values = ["status = ?", "updated_at = ?"], [status, datetime.now().isoformat()]
        for name, value in (("http_status", http_status), ("error_message", error_message),
                            ("response_summary", response_summary)):
            if value is not None:
                fields.append(f"{name} = ?")
                values.append(value)
        conn.execute(f"UPDATE jobs SET {', '.join(fields)} WHERE job_id = ?", (*values, job_id))
        conn.commit()
        return True
    finally:
        conn.close()


def log_action(db, sync, user_id, action_type, customer_ids=None, ip_address=None, status="success",
               error_message=None, duration_ms=None):
    conn = connect(db, sync)
    try:
        ids = json.dumps(customer_ids) if isinstance(customer_ids, list) else customer_ids
        cur = conn.execute(
            "INSERT INTO audit_log (user_id, action_type, customer_ids, ip_address, status, "
            "error_message, duration_ms) VALUES (?,?,?,?,?,?,?)",
            (user_id, action_type, ids, ip_address, status, error_message, duration_ms))
        conn.commit()
        return cur.lastrowid
    finally:
        conn.close()


def get_user_jobs(db, sync, user_id, limit=50):
    conn = connect(db, sync)
    try:
        rows = conn.execute(
            "SELECT j.job_id, j.user_id, j.action_code, j.action_name, j.cluster_url, j.created_at, "
            "j.status, j.http_status, j.error_message, COUNT(jc.id) AS customer_count "
            "FROM jobs j LEFT JOIN job_customers jc ON j.job_id = jc.job_id "
            "WHERE j.user_id = ? GROUP BY j.job_id ORDER BY j.created_at DESC LIMIT ?",
            (user_id, limit)).fetchall()
        return [dict(r) for r in rows]
    finally:
        conn.close()


def get_job_customers(db, sync, job_id):
    conn = connect(db, sync)
    try:
        return [r[0] for r in conn.execute(
            "SELECT cid FROM job_customers WHERE job_id = ? ORDER BY cid", (job_id,))]
    finally:
        conn.close()
