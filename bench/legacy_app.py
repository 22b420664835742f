"""The legacy dashboard's Set Action route (`POST /proxy_fetch`), re-implemented for bench/route.py
from the legacy contract (/work/shared/legacy-contract.md, "The Set Action flow").

What it keeps, because that is what an operator waited for: the order (create the job
IN_PROGRESS, call the cluster with `requests` and a new connection per call, write the audit row,
then update the job), the persistence of bench/legacy.py (a new sqlite3 connection per call, one
INSERT per customer), the `print` lines of the legacy route, and its answers. The legacy app's
session machinery (Flask-Session on files, the timeout check) is left out: the reference app has
none either, and the benchmark compares the Set Action itself. The user comes from the session
or, as in the reference app, from an `X-User` header.

Serve it with gunicorn: `legacy_app:create_app("jobs.db", "audit.db", "FULL")`.
"""

import json
import os
import secrets
import sqlite3
import sys

import requests
from flask import Flask, jsonify, request, session

import legacy

ACTION_CODES = {"trans-begin": 1, "tran-begin": 1, "pe-enable": 2, "t-enable": 3, "pe-finalize": 4,
                "pe-direct": 5}
TRACKED_ACTIONS = {"Trans-Begin", "PE-Enable", "T-Enable", "PE-Finalize", "PE-Direct"}
FORM = "application/x-www-form-urlencoded"


def create_app(jobs_db, audit_db, sync="NORMAL"):
    app = Flask(__name__)
    app.secret_key = os.environ.get("TMS_SECRET_KEY") or secrets.token_hex(16)

    def client_ip():
        forwarded = request.environ.get("HTTP_X_FORWARDED_FOR")
        return forwarded.split(",")[0] if forwarded else (request.remote_addr or "unknown")

    # The legacy modules swallowed database errors: create_job returned None, update_job False,
    # log_action None, and the route went on. Kept, so a failure shows up as a missing job_id or
    # a missing row (which bench/route.py counts), not as a different answer.
    def swallowing(fn, on_error):
        def call(*args, **kwargs):
            try:
                return fn(jobs_db, sync, *args, **kwargs)
            except sqlite3.Error as e:
                print(f"[JOBS] {fn.__name__} failed: {e} ({getattr(e, 'sqlite_errorname', '')})", file=sys.stderr)
                return on_error
        return call

    create_job = swallowing(legacy.create_job, None)
    update_job = swallowing(legacy.update_job, False)

    def log_user_action(user_id, action, cids, status, error_message=None):
        if action not in TRACKED_ACTIONS:
            print(f"Warning: Untracked action type: {action}")
        try:
            return legacy.log_action(audit_db, sync, user_id, action, cids, client_ip(), status, error_message)
        except sqlite3.Error as e:
            print(f"[AUDIT] log_action failed: {e} ({getattr(e, 'sqlite_errorname', '')})", file=sys.stderr)
            return None

    @app.post("/proxy_fetch")
    def proxy_fetch():
        user_id = session.get("user_id") or request.headers.get("X-User")
        if not user_id:
            return jsonify({"error": "Unauthorized"}), 401
        job_id = action = cids = None

        def failed(error_message, http_status):
            """The audit row, then the job, for every outcome but unparsable JSON (as before)."""
            if action and cids:
                print(f"[SET_ACTION] FAILED: user={user_id}, action={action}, error={error_message}")
                log_user_action(user_id, action, cids, "failure", error_message)
                if job_id:
                    update_job(job_id, "FAILED", http_status=http_status, error_message=error_message)

        try:
            data = request.get_json()
            url, token = data.get("url"), data.get("token", "")
            post_data = data.get("postData")
            content_type = data.get("contentType", "application/json")
            if isinstance(post_data, dict):
                action, cids = post_data.get("action"), post_data.get("cids")
            if action and cids:
                print(f"[SET_ACTION] Starting: user={user_id}, action={action}, cid_count={len(cids)}")
                code = ACTION_CODES.get(action.strip().lower())
                if code:
                    job = create_job(user_id, code, action, cids, cluster_url=url, request_payload=post_data,
                                     response_summary="In progress...", status="IN_PROGRESS")
                    job_id = job["job_id"] if job else None
                    print(f"[SET_ACTION] Job created: job_id={job_id}")

            headers = {"Content-Type": content_type}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            if data.get("isPost") and post_data:
                sent = {"data": post_data} if content_type == FORM else {"json": post_data}
                response = requests.post(url, headers=headers, timeout=35, **sent)
            else:
                response = requests.get(url, headers=headers, timeout=35)

            if response.status_code not in (200, 201):
                message = f"API returned status {response.status_code}: {response.text[:200]}"
                failed(message, response.status_code)
                return jsonify({"status": "error", "message": message, "httpStatus": response.status_code,
                                "job_id": job_id}), response.status_code
            try:
                body = response.json()
            except ValueError as e:
                # No audit row here: the legacy defect, kept for a faithful cost.
                if job_id:
                    update_job(job_id, "FAILED", http_status=500, error_message=f"JSON parse error: {e}")
                return jsonify({"status": "error", "message": f"Invalid JSON response: {e}",
                                "httpStatus": response.status_code}), 500
            answer = {"status": "success", "data": body, "httpStatus": response.status_code}
            if action and cids:
                ok = body.get("success", True) if isinstance(body, dict) else True
                error_message = None if ok else body.get("message")
                print(f"[SET_ACTION] Logging audit: action={action}, customer_ids={cids}")
                log_user_action(user_id, action, cids, "success" if ok else "failure", error_message)
                if job_id:
                    update_job(job_id, "SUCCESS" if ok else "FAILED", http_status=response.status_code,
                               error_message=error_message,
                               response_summary=json.dumps(body) if isinstance(body, dict) else str(body))
                    answer["job_id"] = job_id
            return jsonify(answer)
        except requests.exceptions.Timeout:
            failed("Request timeout after 30s", None)
            return jsonify({"status": "error", "message": "Request timeout", "httpStatus": 408,
                            "job_id": job_id}), 408
        except requests.exceptions.RequestException as e:
            failed(str(e), None)
            return jsonify({"status": "error", "message": str(e), "httpStatus": 500, "job_id": job_id}), 500
        except Exception as e:
            failed(str(e), None)
            return jsonify({"status": "error", "message": f"Server error: {e}", "httpStatus": 500,
                            "job_id": job_id}), 500

    @app.get("/health")
    def health():
        return jsonify({"status": "ok"})

    return app
