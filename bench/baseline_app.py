"""The baseline for bench/route.py: the same Flask route under the same gunicorn, doing only the
HTTP call to the cluster, with no job and no audit row.

It is the cheapest call Python makes: one kept-alive http.client connection per server thread
(the library also keeps its connections to the cluster), so "route minus baseline" counts
everything a route adds to the bare round trip: its persistence and its own HTTP client. The
answer has the reference app's success shape, without a job_id.

Serve it with gunicorn: `baseline_app:create_app()`.
"""

import http.client
import json
import threading
from urllib.parse import urlsplit

from flask import Flask, jsonify, request

_local = threading.local()


def post_json(url, headers, body):
    """POST on this thread's connection to the URL's host; a connection the cluster closed while
    idle is opened again once."""
    parts = urlsplit(url)
    for attempt in (1, 2):
        conn = getattr(_local, "conn", None)
        if conn is None or (conn.host, conn.port) != (parts.hostname, parts.port):
            conn = _local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=35)
        try:
            conn.request("POST", parts.path or "/", body, headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (http.client.RemoteDisconnected, ConnectionError):
            conn.close()
            _local.conn = None
            if attempt == 2:
                raise


def create_app():
    app = Flask(__name__)

    @app.post("/proxy_fetch")
    def proxy_fetch():
        if not request.headers.get("X-User"):
            return jsonify({"error": "Unauthorized"}), 401
        data = request.get_json()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {data['token']}"}
        status, raw = post_json(data["url"], headers, json.dumps(data["postData"]).encode())
        if status not in (200, 201):
            return jsonify({"status": "error", "httpStatus": status}), status
        return jsonify({"status": "success", "data": json.loads(raw), "httpStatus": status})

    @app.get("/health")
    def health():
        return jsonify({"status": "ok"})

    return app
