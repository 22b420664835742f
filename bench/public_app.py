"""The public legacy app itself (Venkatreddy-hpe/tms_dashboard_python), its own code against the
same app migrated onto libtms by the README, both under gunicorn, on the same stub cluster.

bench/route.py compares a re-implementation of the legacy route; this one runs the real app, so
what it reports is what an operator of that app would see after following the README:

  own       the checkout as it is (its src/jobs.py, src/audit_db.py and /proxy_fetch, sqlite3
            with a connection per call, `requests` per call)
  migrated  the same checkout with the README's two drop-in shims (src/jobs.py, src/audit_db.py)
            and the README's /proxy_fetch pasted over the app's own, configured only through the
            environment (TMS_ALLOWED_CLUSTERS, TMS_AUDIT_HMAC_KEY_FILE), default paths and
            durability (the app root's jobs.db and audit.db, synchronous FULL)

Both start from the checkout's own jobs.db. Each client logs in as the app's operator (its
session cookie), then sends Set Actions of N unique IDs one after another on a kept-alive
connection; 1 and 16 clients, rounds interleaving the two apps. Every answer must be HTTP 200
with status success, and each request must leave one more job and one more audit row; a phase
that does not is reported as failed with what it left (the app's own code is known to lose rows
under concurrency). Nothing here is fetched: pass the checkout.

  bench/public_app.py --app DIR [--quick] [--markdown FILE]

The app's requirements (Flask 2.3, flask-session 0.5, requests) and gunicorn go into a venv of
their own (target/public-app-venv); Werkzeug is pinned to 2.3.8, as the app does not pin it and
flask-session 0.5 breaks on Werkzeug 3.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import route  # noqa: E402  (the stub, the server process groups, percentiles, CPU accounting)

VENV = os.path.join(ROOT, "target", "public-app-venv")
LOGIN = {"username": "prasad", "password": "Arubatms@123"}  # the app's built-in operator
TOKEN = "bench-bearer-token-0123"
IMPLS = ("own", "migrated")
FULL_CFG = {"rounds": 3, "per_client": {1: 60, 16: 25}, "sizes": (3, 150)}
QUICK_CFG = {"rounds": 1, "per_client": {1: 5, 16: 3}, "sizes": (3,)}


def venv_python(app):
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "-r", os.path.join(app, "requirements.txt"),
                        "werkzeug==2.3.8", "gunicorn"], check=True)
    return python


def readme_block(first_line):
    """The README's ```python block starting with first_line, without it: what an operator pastes."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    found = [b for b in blocks if b.startswith(first_line + "\n")]
    if len(found) != 1:
        raise SystemExit(f"README has {len(found)} python blocks starting {first_line!r}")
    return found[0][len(first_line) + 1:]


def copy_app(app, dest):
    shutil.copytree(app, dest, ignore=shutil.ignore_patterns(".git", "audit.db", "flask_session", "__pycache__",
                                                            "*.db-wal", "*.db-shm", "*.db-journal"))
    return dest


def migrate(app_dir):
    """The README's migration: the two shims, and its route in place of the app's /proxy_fetch
    (the decorated function, up to the next top-level statement)."""
    for module in ("jobs", "audit_db"):
        with open(os.path.join(app_dir, "src", f"{module}.py"), "w") as f:
            f.write(readme_block(f"# src/{module}.py"))
    path = os.path.join(app_dir, "app.py")
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("@app.route('/proxy_fetch'"))
    end = start + 1
    while end < len(lines) and not lines[end].startswith("def "):
        end += 1
    end += 1
    while end < len(lines) and (not lines[end] or lines[end][0] in " \t#"):
        end += 1
    lines[start:end] = readme_block("# app.py").split("\n") + [""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def start_app(name, app_dir, python, env_extra):
    """The app under route.py's gunicorn config, from its own directory, with no TMS_ setting but
    env_extra's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMS_")}
    return route.start_gunicorn(name, "app:app", None, app_dir, env_extra, python=python, env=env)


def login(conn):
    conn.request("POST", "/api/login", json.dumps(LOGIN), {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    cookie = response.getheader("Set-Cookie") or ""
    if response.status != 200 or not cookie:
        raise route.Failure(f"login answered HTTP {response.status}")
    return cookie.split(";", 1)[0]


def counts(app_dir):
    with closing(sqlite3.connect(os.path.join(app_dir, "jobs.db"), timeout=60)) as c:
        jobs = c.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    with closing(sqlite3.connect(os.path.join(app_dir, "audit.db"), timeout=60)) as c:
        audit = c.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
    return jobs, audit


def phase(server, app_dir, stub, ids, n_ids, per_client, clients):
    """(latencies ms, server CPU s per request, problems): each client logs in (untimed, before
    the counts), sends one untimed Set Action, then per_client timed ones."""
    sent = clients * (per_client + 1)
    bodies = [[route.request_body(stub, ids.take(n_ids)) for _ in range(per_client + 1)] for _ in range(clients)]
    # Logging in writes an audit row of the app's own: every client is logged in before counting.
    conns = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=120) for _ in range(clients)]
    try:
        headers = [{"Content-Type": "application/json", "Cookie": login(conn)} for conn in conns]
    finally:
        for conn in conns:
            conn.close()
    before = counts(app_dir)
    cpu = route.group_cpu_s(server.proc.pid)
    samples, _, answers, problems = route.send_all(server.port, bodies, headers)
    cpu = (route.group_cpu_s(server.proc.pid) - cpu) / sent
    for status, raw in answers:
        try:
            ok = status == 200 and json.loads(raw).get("status") == "success"
        except ValueError:
            ok = False
        if not ok:
            problems.append(f"HTTP {status}")
    after = counts(app_dir)
    gained = (after[0] - before[0], after[1] - before[1])
    if gained != (sent, sent):
        problems.append(f"{sent} requests left {gained[0]} jobs and {gained[1]} audit rows")
    return samples, cpu, problems


def run(app, cfg):
    python = venv_python(app)
    work = tempfile.mkdtemp(prefix="tms-public-app-")
    servers = []
    try:
        stub = route.start_stub(work)
        servers.append(stub)
        dirs = {impl: copy_app(app, os.path.join(work, impl)) for impl in IMPLS}
        migrate(dirs["migrated"])
        key_file = os.path.join(work, "audit.key")
        with open(key_file, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(key_file, 0o600)
        lib_env = {"PYTHONPATH": os.path.join(ROOT, "bindings", "python"),
                   "TMS_LIB": os.path.join(ROOT, "target", "release", "libtms.so"),
                   "TMS_ALLOWED_CLUSTERS": f"http://127.0.0.1:{stub.port}/tms/",
                   "TMS_AUDIT_HMAC_KEY_FILE": key_file}
        apps = {"own": start_app("own", dirs["own"], python, {}),
                "migrated": start_app("migrated", dirs["migrated"], python, lib_env)}
        servers.extend(apps.values())
        ids = route.Ids()
        results = {}
        for r in range(cfg["rounds"]):
            for n_ids in cfg["sizes"]:
                for clients in (1, 16):
                    order = IMPLS if r % 2 == 0 else IMPLS[::-1]
                    for impl in order:
                        samples, cpu, problems = phase(apps[impl], dirs[impl], stub, ids, n_ids,
                                                       cfg["per_client"][clients], clients)
                        res = results.setdefault((n_ids, clients, impl), {"samples": [], "rounds": [], "cpu": [],
                                                                          "problems": []})
                        res["samples"] += samples
                        res["rounds"].append((route.percentile(samples, 50), route.percentile(samples, 99))
                                             if samples else None)
                        res["cpu"].append(cpu)
                        res["problems"] += problems
                        print(f"round {r + 1}: {n_ids} IDs, {clients} clients, {impl}: "
                              f"p50 {route.percentile(samples, 50) if samples else float('nan'):.1f} ms, "
                              f"{len(problems)} problems", flush=True)
        return results
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


def render(results, cfg):
    lines = [f"Public legacy app, its own code against the README's migration; {route.GUNICORN_DESC}; stub "
             f"{route.STUB_LATENCY_MS:.0f} ms; {cfg['rounds']} rounds; synchronous FULL on both (sqlite3's "
             "default, the library's default).", "",
             "| Set Action | clients | app | p50 | p99 | p50 per round | p99 per round | own/migrated at p50 | "
             "server CPU/req | checks |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n_ids in cfg["sizes"]:
        for clients in (1, 16):
            own = results[(n_ids, clients, "own")]
            for impl in IMPLS:
                res = results[(n_ids, clients, impl)]
                s = res["samples"]
                p50, p99 = route.percentile(s, 50), route.percentile(s, 99)
                rounds = [x for x in res["rounds"] if x]
                ratio = route.percentile(own["samples"], 50) / p50 if impl == "migrated" else None
                problems = res["problems"]
                check = "ok" if not problems else "**" + "; ".join(
                    f"{problems.count(p)} x {p}" if problems.count(p) > 1 else p for p in sorted(set(problems))[:3]) + "**"
                lines.append(
                    f"| {n_ids} IDs | {clients} | {impl} | {p50:.1f} ms | {p99:.1f} ms | "
                    f"{min(x[0] for x in rounds):.1f}–{max(x[0] for x in rounds):.1f} ms | "
                    f"{min(x[1] for x in rounds):.1f}–{max(x[1] for x in rounds):.1f} ms | "
                    f"{f'{ratio:.2f}x' if ratio else '-'} | {sum(res['cpu']) / len(res['cpu']) * 1000:.2f} ms | {check} |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--app", required=True, help="a checkout of Venkatreddy-hpe/tms_dashboard_python")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--markdown")
    args = ap.parse_args(argv)
    cfg = QUICK_CFG if args.quick else FULL_CFG
    lines = render(run(os.path.abspath(args.app), cfg), cfg)
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
