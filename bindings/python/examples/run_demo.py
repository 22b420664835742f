"""The main job, end to end: a stub cluster and the reference Flask app on loopback, the store on
the default paths (jobs.db and audit.db in the current directory), and one Set Action sent
through the app. Then the app keeps serving so you can try it with curl (Ctrl-C stops it);
`--once` stops right after the walk-through.

Run it with `make demo` from the repository root (files go to data/).
"""

import argparse
import json
import logging
import os
import socket
import sys
import threading
import urllib.request

from werkzeug.serving import make_server

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from app import create_app  # noqa: E402
from stub_cluster import StubCluster  # noqa: E402


def call(base, method, path, user, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("X-User", user)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def free_port(wanted):
    """`wanted` if nothing listens there, else a free port (werkzeug would exit on a taken one,
    not raise)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", wanted))
            return wanted
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--once", action="store_true", help="exit after the walk-through")
    parser.add_argument("--port", type=int, default=int(os.environ.get("TMS_DEMO_PORT", "5050")))
    parser.add_argument("--cluster-port", type=int, default=int(os.environ.get("TMS_DEMO_CLUSTER_PORT", "5051")))
    args = parser.parse_args()
    # The library's own lines carry their time and level; print them as they are.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)-8s | %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    cluster_port = free_port(args.cluster_port)
    cluster = StubCluster(port=cluster_port).start()
    app = create_app([cluster.base])
    port = free_port(args.port)
    server = make_server("127.0.0.1", port, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name, got, wanted in (("app", port, args.port), ("stub cluster", cluster_port, args.cluster_port)):
        if got != wanted:
            print(f"port {wanted} is taken: the {name} listens on {got} instead")

    with app.app_context():
        from tms import audit_db, jobs
        print(f"jobs.db:  {os.path.abspath(jobs.DB_PATH)}\naudit.db: {os.path.abspath(audit_db.AUDIT_DB_PATH)}")
    print(f"stub cluster: {cluster.base}\napp:          {base}\n")

    request_body = {
        "url": f"{cluster.base}/tms/v1/set/action",
        "token": "demo-bearer-token-0123",
        "isPost": True,
        "contentType": "application/json",
        "postData": {"action": "Trans-Begin",
                     "cids": ["948ef156c19511f08f342664b3b9825e", "abc123def456789012345678",
                              "948ef156c19511f08f342664b3b9825e"]},
    }
    status, answer = call(base, "POST", "/proxy_fetch", "demo_operator", request_body)
    print(f"POST /proxy_fetch -> {status}\n{json.dumps(answer, indent=2)}\n")
    status, mine = call(base, "GET", "/api/jobs/mine?limit=3", "demo_operator")
    print(f"GET /api/jobs/mine -> {status}\n{json.dumps(mine, indent=2)}\n")
    status, trail = call(base, "GET", "/api/audit/trail?limit=3", "demo_operator")
    print(f"GET /api/audit/trail -> {status}\n{json.dumps(trail, indent=2)}\n")

    print("Try it yourself" + (" (rerun without --once to keep serving):" if args.once else " (Ctrl-C stops the demo):"))
    print(f"""  curl -s -X POST {base}/proxy_fetch -H 'X-User: alice' -H 'Content-Type: application/json' \\
       -d '{{"url":"{cluster.base}/tms/v1/set/action","token":"operator-token-123","isPost":true,"postData":{{"action":"PE-Enable","cids":["c1","c2","c1"]}}}}'
  curl -s {base}/api/jobs/mine -H 'X-User: alice'
  curl -s '{base}/api/audit/trail?user_id=alice' -H 'X-User: alice'""")
    if args.once:
        server.shutdown()
        cluster.stop()
        return
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        cluster.stop()


if __name__ == "__main__":
    main()
