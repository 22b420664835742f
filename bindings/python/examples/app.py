"""The reference dashboard backend: the legacy routes on top of libtms.

`/proxy_fetch` is one call (`Store.set_action`); the jobs and audit routes use the drop-in
modules `tms.jobs` and `tms.audit_db`, exactly as the legacy app used its own modules, so the
switch in an existing app is two imports. The logged-in user comes from the Flask session
(`POST /login`); this reference app also accepts an `X-User` header so curl can stand in for
the browser.
"""

import functools
import os
import secrets
import sys

from flask import Flask, jsonify, request, session

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tms  # noqa: E402
from tms import audit_db, jobs  # noqa: E402  (the two-import switch)

MAX_JOBS_LIMIT = 500


def create_app(allowed_clusters, store_options=None):
    """The app on the drop-in modules' paths (jobs.DB_PATH, audit_db.AUDIT_DB_PATH).

    `synchronous` is FULL unless TMS_SYNCHRONOUS (FULL or NORMAL) or store_options say otherwise.
    The drop-in modules read the same variable, so both stores on these files agree; it also
    lets a server such as gunicorn choose it without code (`TMS_SYNCHRONOUS=NORMAL gunicorn
    'app:create_app(["https://cluster.example/tms/"])'`)."""
    app = Flask(__name__)
    app.secret_key = os.environ.get("TMS_SECRET_KEY") or secrets.token_hex(16)
    jobs.initialize_jobs_database()
    audit_db.initialize_database()
    options = {"synchronous": os.environ.get("TMS_SYNCHRONOUS") or None, **(store_options or {})}
    store = tms.Store(jobs.DB_PATH, audit_db.AUDIT_DB_PATH,
                      allowed_clusters=list(allowed_clusters), **options)
    app.config["TMS_STORE"] = store

    def current_user():
        return session.get("user_id") or request.headers.get("X-User")

    def client_ip():
        forwarded = request.headers.get("X-Forwarded-For", "")
        return forwarded.split(",")[0].strip() or request.remote_addr

    def logged_in(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            if not current_user():
                return jsonify({"status": "error", "message": "not logged in"}), 401
            return view(*args, **kwargs)
        return guarded

    class BadRequest(Exception):
        pass

    @app.errorhandler(BadRequest)
    def bad_request(err):
        return jsonify({"status": "error", "message": str(err)}), 400

    def limit_arg():
        """?limit=, 50 by default, capped as the legacy routes capped it."""
        try:
            return max(0, min(int(request.args.get("limit", 50)), MAX_JOBS_LIMIT))
        except ValueError:
            raise BadRequest("limit must be a number") from None

    @app.post("/login")
    def login():
        data = request.get_json(silent=True) or request.form
        user = (data.get("user_id") or data.get("user") or "").strip()
        if not user:
            return jsonify({"status": "error", "message": "user_id is required"}), 400
        session["user_id"] = user
        return jsonify({"status": "success", "user_id": user})

    @app.post("/logout")
    def logout():
        session.clear()
        return jsonify({"status": "success"})

    @app.post("/proxy_fetch")
    @logged_in
    def proxy_fetch():
        key = request.headers.get("Idempotency-Key")
        status, body = store.set_action(request.get_data(as_text=True), current_user(),
                                        client_ip(), key)
        return jsonify(body), status

    @app.post("/api/jobs/create")
    @logged_in
    def create_job_route():
        data = request.get_json(silent=True) or {}
        action = data.get("action") or ""
        code = tms.get_action_code(action)
        if code is None:
            return jsonify({"status": "error", "message": f"unknown action {action!r}"}), 400
        cids = data.get("cids") or []
        if isinstance(cids, str):
            try:
                cids = tms.parse_customer_ids(cids, csv=bool(data.get("csv")))
            except tms.TmsError as e:
                return jsonify({"status": "error", "message": str(e)}), 400
        job = jobs.create_job(current_user(), code, action, cids,
                              cluster_url=data.get("cluster_url"), batch_id=data.get("batch_id"),
                              request_payload={"action": action, "cids": cids})
        if job is None:
            return jsonify({"status": "error", "message": "the job could not be created"}), 400
        return jsonify({"status": "success", "job": job}), 201

    @app.get("/api/jobs/mine")
    @logged_in
    def my_jobs():
        rows = jobs.get_user_jobs(current_user(), limit_arg())
        return jsonify({"status": "success", "jobs": rows, "count": len(rows)})

    @app.get("/api/jobs/<job_id>/customers")
    @logged_in
    def job_customers(job_id):
        job = jobs.get_job_details(job_id)
        if job is None:
            return jsonify({"status": "error", "message": "job not found"}), 404
        if job["user_id"] != current_user():
            return jsonify({"status": "error", "message": "not your job"}), 403
        cids = jobs.get_job_customers(job_id)
        return jsonify({"status": "success", "job_id": job_id, "customers": cids, "count": len(cids)})

    @app.get("/api/audit/trail")
    @logged_in
    def audit_trail():
        rows = audit_db.get_audit_trail(limit=limit_arg(), user_id=request.args.get("user_id"),
                                        action_type=request.args.get("action_type"),
                                        customer_id=request.args.get("customer_id"))
        return jsonify({"status": "success", "records": rows, "count": len(rows)})

    @app.get("/api/audit/stats")
    @logged_in
    def audit_stats():
        return jsonify({"status": "success", "stats": audit_db.get_audit_stats()})

    @app.get("/metrics")
    def metrics():
        # Prometheus scrapes without a session, as /health is read; the text holds counts only.
        return store.metrics(), 200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}

    @app.get("/health")
    def health():
        return jsonify({"status": "ok", "library": tms.version(),
                        "jobs_db": os.path.abspath(jobs.DB_PATH),
                        "audit_db": os.path.abspath(audit_db.AUDIT_DB_PATH)})

    return app
