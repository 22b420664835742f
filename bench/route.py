"""The whole Set Action route as an operator feels it: POST /proxy_fetch through gunicorn and
Flask to a cluster on loopback and back, for three servers under the same gunicorn config:

  baseline  the route doing only the HTTP call (bench/baseline_app.py), no persistence
  library   the reference app, bindings/python/examples/app.py, on libtms
  legacy    the legacy route re-implemented (bench/legacy_app.py): connection per call, requests

The cluster is bench/route_stub.py, answering after a fixed STUB_LATENCY_MS. Clients (threads
here, each with a kept-alive http.client connection) send Set Actions of 3 and 150 unique
customer IDs, 1 and 16 at a time, at synchronous NORMAL and FULL. "Adds" is a route's latency
minus the baseline's at the same percentile. Every answer must be a success, and the store must
hold exactly one more job (with its customers, SUCCESS) and one more audit row per request;
anything else stops the run.

  bench/route.py [--quick] [--markdown FILE] [--charts DIR]

`--quick` is the smoke run (well under a minute, targets not judged). `run(quick)` returns
(table_lines, target_lines) for bench/run.py.
"""

import argparse
import ctypes
import http.client
import json
import math
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "bindings", "python", "examples")
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))

import tms  # noqa: E402

STUB_LATENCY_MS = 20.0
WORKERS, THREADS = 2, 8
# 2 processes x 8 threads serve 16 callers at once; --keep-alive outlasts the pauses between
# phases so kept-alive client connections are not closed under a phase.
GUNICORN = ["--worker-class", "gthread", "--workers", str(WORKERS), "--threads", str(THREADS),
            "--keep-alive", "60", "--graceful-timeout", "5", "--backlog", "256", "--log-level", "warning"]
GUNICORN_DESC = f"gunicorn gthread, {WORKERS} workers x {THREADS} threads, loopback"
IMPLS = ("baseline", "library", "legacy")
SYNCS = ("NORMAL", "FULL")
SIZES = (3, 150)
CLIENTS = (1, 16)
TOKEN = "bench-bearer-token-0123"
# Timed requests per client and round (every phase starts with one untimed request per client),
# and the warm-up's at 16 clients when a server starts.
FULL = {"rounds": 3, "per_client": {1: 60, 16: 25}, "warmup_per_client": 3}
QUICK = {"rounds": 1, "per_client": {1: 6, 16: 2}, "warmup_per_client": 1}
TARGET_MS = 2.0


class Failure(RuntimeError):
    """A request that did not succeed or a store that does not hold what the requests left."""


def _die_with_parent():
    """Run in the child: SIGTERM when the benchmark dies, even by SIGKILL, so no server outlives
    it (Linux; elsewhere the finally blocks are all there is)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Server:
    """A server in a process group of its own, ended with all its children by stop()."""

    def __init__(self, name, argv, cwd, env=None, pass_fds=(), stdout=subprocess.DEVNULL):
        self.name = name
        self.log_path = os.path.join(cwd, f"{name}.log")
        self.stopped = False
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout, stderr=log, pass_fds=pass_fds,
                                         start_new_session=True, preexec_fn=_die_with_parent)

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self):
        """Once: SIGTERM to the group (gunicorn's graceful stop, a fraction of a second here),
        then SIGKILL to whatever is left of it, also when interrupted while waiting."""
        if self.stopped:
            return
        self.stopped = True
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            if self.proc.stdout:
                self.proc.stdout.close()


def start_stub(workdir, latency_ms=STUB_LATENCY_MS, name="stub"):
    stub = Server(name, [sys.executable, os.path.join(HERE, "route_stub.py"), "--latency-ms", str(latency_ms)],
                  workdir, stdout=subprocess.PIPE)
    line = stub.proc.stdout.readline()
    if not line.strip().isdigit():
        stub.stop()
        raise Failure(f"the stub cluster did not start: {stub.log_tail()}")
    stub.port = int(line)
    return stub


def start_gunicorn(name, app_spec, pythonpath, workdir, env_extra=None, python=sys.executable, env=None):
    """gunicorn on a socket bound here to a free port and handed over by its descriptor, so no
    other process can take the port between choosing and binding it. `pythonpath` None: the app
    is found in `workdir`; `env` None: this environment without the store's TMS_ paths."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in ("TMS_JOBS_DB", "TMS_AUDIT_DB", "TMS_SYNCHRONOUS")}
    env = {**env, **(env_extra or {})}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        argv = [python, "-m", "gunicorn", *GUNICORN, "--bind", f"fd://{sock.fileno()}",
                *(["--pythonpath", pythonpath] if pythonpath else []), app_spec]
        server = Server(name, argv, workdir, env, pass_fds=(sock.fileno(),))
        server.port = sock.getsockname()[1]
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return server
        except OSError:
            pass
        if server.proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise Failure(f"{name} did not start:\n{server.log_tail()}")
        time.sleep(0.1)


def fresh_store(workdir, name):
    """Store files made by libtms (the legacy tables and indexes plus the library's own), as
    bench/run.py makes them, before any worker opens them; in a new directory named after name."""
    d = tempfile.mkdtemp(prefix=f"{name}-", dir=workdir)
    jobs_db, audit_db = os.path.join(d, "jobs.db"), os.path.join(d, "audit.db")
    tms.Store(jobs_db, audit_db).close()
    return jobs_db, audit_db


def start_route(impl, sync, stub, workdir):
    if impl == "baseline":
        return start_gunicorn("baseline", "baseline_app:create_app()", HERE, workdir), None
    jobs_db, audit_db = fresh_store(workdir, f"{impl}-{sync}")
    name = os.path.basename(os.path.dirname(jobs_db))
    if impl == "library":
        spec = f"app:create_app([{f'http://127.0.0.1:{stub.port}'!r}])"
        env = {"TMS_JOBS_DB": jobs_db, "TMS_AUDIT_DB": audit_db, "TMS_SYNCHRONOUS": sync}
        server = start_gunicorn(name, spec, EXAMPLES, workdir, env)
    else:
        server = start_gunicorn(name, f"legacy_app:create_app({jobs_db!r}, {audit_db!r}, {sync!r})", HERE, workdir)
    return server, (jobs_db, audit_db)


class Ids:
    """Customer IDs never used before in this run, shaped like the real ones (lowercase hex)."""

    def __init__(self):
        self.next = 0

    def take(self, n):
        start, self.next = self.next, self.next + n
        return [f"{i:032x}" for i in range(start, start + n)]


def request_body(stub, cids):
    return json.dumps({"url": f"http://127.0.0.1:{stub.port}/tms/v1/set/action", "token": TOKEN, "isPost": True,
                       "contentType": "application/json",
                       "postData": {"action": "Trans-Begin", "cids": cids}}).encode()


HEADERS = {"Content-Type": "application/json", "X-User": "bench-operator"}


def send_all(port, bodies_per_client, headers_per_client=None):
    """A thread per client, each sending its bodies one after another on its own kept-alive
    connection (with its headers); the first body of each is untimed (it opens the connection).
    Returns the timed latencies (ms), the wall time of the timed part (s), the (status, body)
    answers and the errors of clients that stopped."""
    n = len(bodies_per_client)
    headers_per_client = headers_per_client or [HEADERS] * n
    barrier = threading.Barrier(n + 1)
    samples, answers, errors = [], [], []
    lock = threading.Lock()

    def client(bodies, headers):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine, got = [], []
        try:
            for i, body in enumerate(bodies):
                if i == 1:
                    barrier.wait()
                t = time.perf_counter()
                conn.request("POST", "/proxy_fetch", body, headers)
                response = conn.getresponse()
                raw = response.read()
                if i:
                    mine.append((time.perf_counter() - t) * 1000)
                got.append((response.status, raw))
        except Exception as e:  # reported by the caller; a missing answer fails the phase
            with lock:
                errors.append(f"{type(e).__name__}: {e}")
            barrier.abort()
        finally:
            conn.close()
        with lock:
            samples.extend(mine)
            answers.extend(got)

    threads = [threading.Thread(target=client, args=(b, h), daemon=True)
               for b, h in zip(bodies_per_client, headers_per_client)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    for t in threads:
        t.join()
    return samples, time.perf_counter() - start, answers, errors


def drive(port, bodies_per_client, has_job):
    """One phase (send_all), every answer checked: returns the timed latencies (ms), the wall time
    of the timed part (s), and the job ids answered."""
    samples, wall, answers, errors = send_all(port, bodies_per_client)
    job_ids = []
    for status, raw in answers:
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = {}
        if status == 200 and answer.get("status") == "success" and has_job and not answer.get("job_id"):
            errors.append("a success without a job_id (no job was recorded)")
        elif status != 200 or answer.get("status") != "success":
            errors.append(f"HTTP {status}: {raw[:200]!r}")
        else:
            job_ids.append(answer.get("job_id"))
    expected = sum(len(b) for b in bodies_per_client)
    if errors or len(answers) != expected:
        kinds = ", ".join(f"{errors.count(e)} x {e}" for e in sorted(set(errors))[:3])
        raise Failure(f"{len(errors) or expected - len(answers)} of {expected} requests failed: {kinds}")
    if has_job and len(set(job_ids)) != expected:
        raise Failure(f"{expected} requests answered {len(set(job_ids))} distinct job ids")
    return samples, wall, job_ids


def store_counts(store, job_ids=()):
    """(jobs, customer rows, jobs not SUCCESS, audit rows, audit rows not success), and of the
    given jobs: how many exist SUCCESS, and their customer rows."""
    jobs_db, audit_db = store
    marks = ",".join("?" * len(job_ids)) or "NULL"
    with closing(sqlite3.connect(jobs_db, timeout=30)) as c:
        jobs, not_done = c.execute("SELECT COUNT(*), COUNT(*) FILTER (WHERE status != 'SUCCESS') FROM jobs").fetchone()
        customers = c.execute("SELECT COUNT(*) FROM job_customers").fetchone()[0]
        answered = c.execute(f"SELECT COUNT(*) FROM jobs WHERE status = 'SUCCESS' AND job_id IN ({marks})",
                             job_ids).fetchone()[0]
        answered_customers = c.execute(f"SELECT COUNT(*) FROM job_customers WHERE job_id IN ({marks})",
                                       job_ids).fetchone()[0]
    with closing(sqlite3.connect(audit_db, timeout=30)) as c:
        audit, not_ok = c.execute("SELECT COUNT(*), COUNT(*) FILTER (WHERE status != 'success') FROM audit_log").fetchone()
    return (jobs, customers, not_done, audit, not_ok), (answered, answered_customers)


def group_cpu_s(pgid):
    """CPU seconds used so far by a process group (gunicorn's master and workers), from /proc:
    at 16 clients this machine's 2 cores are the bottleneck, and a route's CPU per request is
    what its latency there is made of."""
    ticks = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()  # after the command name
            except OSError:
                continue
            if int(fields[2]) == pgid:  # pgrp; then utime and stime, in clock ticks
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_phase(server, store, stub, ids, n_ids, per_client, clients):
    """Send, then check the store gained exactly one job (n_ids customers, SUCCESS) and one
    successful audit row per request. Returns the latencies (ms), the wall time (s) and the
    server's CPU seconds per request."""
    bodies = [[request_body(stub, ids.take(n_ids)) for _ in range(per_client + 1)] for _ in range(clients)]
    sent = clients * (per_client + 1)
    try:
        before = store_counts(store)[0] if store else None
        cpu = group_cpu_s(server.proc.pid)
        samples, wall, job_ids = drive(server.port, bodies, has_job=store is not None)
        cpu = (group_cpu_s(server.proc.pid) - cpu) / sent
        if store:
            after, answered = store_counts(store, job_ids)
    except sqlite3.Error as e:
        raise Failure(f"{server.name}: its store cannot be read: {e}") from None
    if store:
        gained = tuple(a - b for a, b in zip(after, before))
        if gained != (sent, sent * n_ids, 0, sent, 0) or answered != (sent, sent * n_ids):
            raise Failure(f"{server.name}: {sent} requests of {n_ids} IDs left (jobs, customer rows, jobs not "
                          f"SUCCESS, audit rows, audit rows not success) = {gained}; of the jobs answered "
                          f"(SUCCESS, customer rows) = {answered}")
    return samples, wall, cpu


def integrity(store):
    """None, or what PRAGMA integrity_check says of the store's files (the counts miss a page
    the store wrote over)."""
    found = []
    for path in store:
        try:
            with closing(sqlite3.connect(path, timeout=30)) as c:
                verdict = c.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.Error as e:
            verdict = str(e)
        if verdict != "ok":
            found.append(f"{os.path.basename(path)}: {verdict.splitlines()[0]}")
    return "; ".join(found) or None


def logged_errors(server, offset):
    """The SQLite errors (by name) the legacy route printed to its log since offset."""
    with open(server.log_path, errors="replace") as f:
        f.seek(offset)
        names = [line.rsplit("(", 1)[-1].rstrip(")\n") for line in f if "failed:" in line]
    return ", ".join(f"{name} x{names.count(name)}" for name in sorted(set(names))) or "none"


def percentile(samples, q):
    """Nearest rank: a value that was measured."""
    s = sorted(samples)
    return s[max(0, min(len(s) - 1, -(-len(s) * q // 100) - 1))]


def measure(cfg, workdir):
    """{(sync, n_ids, clients, impl): {"rounds": [[ms, ...], or None for a failed round], "wall": s,
    "cpu": [s per request per round]}}, and the legacy route's failures.

    A failure of the baseline or the library stops the run. The legacy route's failures are a
    result (under 16 clients its connection-per-call persistence has failed here with
    SQLITE_IOERR_SHORT_READ, SQLITE_CORRUPT and a jobs.db whose first page was overwritten): the
    round is recorded as failed, and the legacy route starts again on a fresh store so that the
    later cells still measure it."""
    results, failures, ids, servers, stores = {}, [], Ids(), [], []

    def start(impl, sync):
        server, store = start_route(impl, sync, stub, workdir)
        servers.append(server)
        stores.append((impl, sync, store))
        return server, store

    def phase(routes, impl, sync, where, n_ids, per_client, clients):
        server, store = routes[impl]
        offset = os.path.getsize(server.log_path)
        try:
            return run_phase(server, store, stub, ids, n_ids, per_client, clients)
        except Failure as e:
            if impl != "legacy":
                raise
            failures.append(f"{where}: {e}; its log: {logged_errors(server, offset)}")
            server.stop()
            routes[impl] = start(impl, sync)
            return None

    try:
        stub = start_stub(workdir)
        servers.append(stub)
        baseline, _ = start_route("baseline", None, stub, workdir)
        servers.append(baseline)
        for sync in SYNCS:
            routes = {"baseline": (baseline, None), "library": start("library", sync), "legacy": start("legacy", sync)}
            # Warm up: every worker imports, opens its files and its connections.
            for impl in IMPLS:
                phase(routes, impl, sync, f"{sync} warm-up", 3, cfg["warmup_per_client"], 16)
            for n_ids in SIZES:
                for clients in CLIENTS:
                    for r in range(cfg["rounds"]):
                        # Interleaved, and each round in another order, so the machine's drift
                        # (I/O bursts, checkpoints, a neighbour's load) falls on all of them alike.
                        for impl in IMPLS[r % 3:] + IMPLS[:r % 3]:
                            where = f"{sync}, {n_ids} IDs, {clients} client{'s' if clients > 1 else ''}, round {r + 1}"
                            got = phase(routes, impl, sync, where, n_ids, cfg["per_client"][clients], clients)
                            cell = results.setdefault((sync, n_ids, clients, impl), {"rounds": [], "wall": 0.0, "cpu": []})
                            cell["rounds"].append(got and got[0])
                            if got:
                                cell["wall"] += got[1]
                                cell["cpu"].append(got[2])
            for impl in ("library", "legacy"):
                routes[impl][0].stop()
            for impl, store_sync, store in stores:
                broken = integrity(store) if store_sync == sync else None
                if broken and impl != "legacy":
                    raise Failure(f"{impl} at {sync}: integrity_check: {broken}")
                if broken:
                    failures.append(f"{sync}: a legacy store after the run: integrity_check: {broken}")
    except Failure:
        for s in servers:
            tail = s.log_tail()
            if tail.strip():
                print(f"--- {s.name} log ---\n{tail}", file=sys.stderr)
        raise
    finally:
        for s in reversed(servers):
            s.stop()
    return results, failures


def summarize(results):
    """Per cell: p50, p99, req/s and CPU over the rounds that passed their checks (None when
    none did), and p50 and p99 per round (None for a failed one)."""
    out = {}
    for key, cell in results.items():
        good = [r for r in cell["rounds"] if r is not None]
        every = [x for r in good for x in r]
        out[key] = {"failed": len(cell["rounds"]) - len(good), "rounds": len(cell["rounds"]), "n": len(every),
                    "round_p50": [r and percentile(r, 50) for r in cell["rounds"]],
                    "round_p99": [r and percentile(r, 99) for r in cell["rounds"]]}
        if every:
            out[key].update(p50=percentile(every, 50), p99=percentile(every, 99), rps=len(every) / cell["wall"],
                            cpu_ms=1000 * sum(cell["cpu"]) / len(cell["cpu"]))
    return out


def ms(v, signed=False):
    if v is None:
        return "-"
    return f"{v:{'+' if signed else ''}.{2 if abs(v) < 10 else 1}f} ms"


def spread(values, signed=False):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return ms(values[0], signed) if len(values) == 1 else f"{ms(min(values), signed)} – {ms(max(values), signed)}"


def adds(s, sync, n, c, impl, q):
    """A route's latency minus the baseline's at percentile q, overall and per round (None where
    the route failed its checks)."""
    route, base = s[(sync, n, c, impl)], s[(sync, n, c, "baseline")]
    per_round = [a - b for a, b in zip(route[f"round_{q}"], base[f"round_{q}"]) if a is not None]
    return (route[q] - base[q] if q in route else None), per_round


def render(s, failures, cfg, quick):
    header = ["Set Action", "clients", "sync", "route", "req/s", "p50", "p99", "p99 per round",
              "p50 − stub", "p99 − stub", "adds at p50", "adds at p99", "server CPU/req", "checks"]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for sync in SYNCS:
        for n in SIZES:
            for c in CLIENTS:
                for impl in IMPLS:
                    x = s[(sync, n, c, impl)]
                    added = ["-", "-"] if impl == "baseline" else \
                        [ms(adds(s, sync, n, c, impl, q)[0], True) for q in ("p50", "p99")]
                    minus_stub = [ms(x[q] - STUB_LATENCY_MS, True) if q in x else "-" for q in ("p50", "p99")]
                    checks = "ok" if not x["failed"] else f"**{x['failed']} of {x['rounds']} rounds failed**"
                    table.append("| " + " | ".join([
                        f"{n} IDs", str(c), sync, impl, f"{x['rps']:.0f}" if "rps" in x else "-", ms(x.get("p50")),
                        ms(x.get("p99")), spread(x["round_p99"]), *minus_stub, *added, ms(x.get("cpu_ms")),
                        checks]) + " |")
    lib, lib_rounds = adds(s, "FULL", 150, 16, "library", "p99")
    leg, leg_rounds = adds(s, "FULL", 150, 16, "legacy", "p99")
    leg_cell = s[("FULL", 150, 16, "legacy")]
    leg_failed = f"; it failed its checks in {leg_cell['failed']} of {leg_cell['rounds']} rounds" if leg_cell["failed"] else ""
    verdict = "(smoke run: not judged)" if quick else ("met" if lib <= TARGET_MS else "NOT MET")
    targets = [
        f"- at 16 concurrent clients the library adds at most {TARGET_MS:g} ms at p99 to a Set Action of 150 IDs at "
        f"FULL: it adds {ms(lib, True)} (per round {spread(lib_rounds, True)}); the legacy route adds "
        f"{ms(leg, True)} (per round {spread(leg_rounds, True)}{leg_failed}) **{verdict}**",
    ]
    for q in ("p50", "p99"):
        for impl in ("library", "legacy"):
            cells = ", ".join(f"{n} IDs/{c}/{sync} {ms(adds(s, sync, n, c, impl, q)[0], True)}"
                              for sync in SYNCS for n in SIZES for c in CLIENTS)
            targets.append(f"- {impl} adds at {q} (IDs/clients/sync): {cells}")
    targets += [f"- the legacy route failed its checks: {f}" for f in failures]
    n_one = s[("FULL", 150, 1, "library")]["n"]
    n_many = s[("FULL", 150, 16, "library")]["n"]
    setup = (f"{GUNICORN_DESC}; stub cluster latency {STUB_LATENCY_MS:g} ms; {cfg['rounds']} interleaved rounds, "
             f"{n_one} timed requests per cell at 1 client and {n_many} at 16; every answer a success, every "
             "request one job and one audit row (counted), integrity_check on every store; server CPU/req is the "
             "CPU time of gunicorn's processes per request")
    return table, targets, setup


def draw_chart(s, path):
    """p50 and p99 against concurrency, per route; an SVG that changes only when the numbers do."""
    import charts  # the benchmark's shared chart settings (stable SVG, colours)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    plt.rcParams.update({"font.size": 8})
    colors = charts.COLOURS
    fig, axes = plt.subplots(len(SIZES), len(SYNCS), figsize=(8, 6), squeeze=False)
    for i, n in enumerate(SIZES):
        for j, sync in enumerate(SYNCS):
            ax = axes[i][j]
            for impl in IMPLS:
                for q, style in (("p50", "-"), ("p99", "--")):
                    ax.plot(CLIENTS, [s[(sync, n, c, impl)].get(q, math.nan) for c in CLIENTS], style, marker="o",
                            color=colors[impl], label=f"{impl} {q}")
            ax.axhline(STUB_LATENCY_MS, color="black", linewidth=0.6, linestyle=":", label="stub latency")
            ax.set_xscale("log", base=2)
            ax.set_xticks(CLIENTS, [str(c) for c in CLIENTS])
            # Logarithmic: the legacy p99 runs to a second while the others differ by milliseconds.
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_yticks([20, 50, 100, 200, 500, 1000])
            ax.set_title(f"Set Action of {n} IDs, synchronous={sync}")
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel("latency (ms)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False)
    fig.suptitle(f"POST /proxy_fetch through {GUNICORN_DESC}")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    charts.save(fig, os.path.dirname(path), os.path.basename(path))


def cpu_after_a_wait(workdir, calls):
    """CPU per Set Action in this process, on one thread, with no gunicorn or Flask around it:
    the library's `Store.set_action` against the baseline route's HTTP call (baseline_app's
    post_json and JSON), 3 IDs, NORMAL, with the stub answering at once and after its
    STUB_LATENCY_MS. The difference between the two says how much of a route's CPU comes from
    running after a wait: on a VM, work after the thread slept runs with its caches and the
    core's state lost, and the library does more of its work after the cluster answered (the
    outcome, the audit row) than the baseline does (a JSON parse). Returns {(latency_ms, impl):
    µs per call}, medians over interleaved rounds."""
    if HERE not in sys.path:  # route.py imported from elsewhere (bench/run.py runs from bench/)
        sys.path.insert(0, HERE)
    from baseline_app import post_json  # the baseline route's own call

    out, ids = {}, Ids()
    for latency in (0.0, STUB_LATENCY_MS):
        stub = start_stub(workdir, latency, f"stub-{latency:g}ms")
        try:
            d = tempfile.mkdtemp(prefix="wait-", dir=workdir)
            store = tms.Store(os.path.join(d, "jobs.db"), os.path.join(d, "audit.db"), synchronous="NORMAL",
                              allowed_clusters=[f"http://127.0.0.1:{stub.port}"])

            def library(body):
                status, answer = store.set_action(body.decode(), "bench-operator", "127.0.0.1", None)
                if status != 200 or not answer.get("job_id"):
                    raise Failure(f"set_action in process: HTTP {status}: {answer}")

            def baseline(body):
                data = json.loads(body)
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {data['token']}"}
                status, raw = post_json(data["url"], headers, json.dumps(data["postData"]).encode())
                if status != 200:
                    raise Failure(f"baseline call in process: HTTP {status}")
                json.dumps({"status": "success", "data": json.loads(raw), "httpStatus": status})

            rounds = {"library": [], "baseline": []}
            with store:
                for r in range(3):
                    for name, call in (("library", library), ("baseline", baseline))[::1 if r % 2 else -1]:
                        bodies = [request_body(stub, ids.take(3)) for _ in range(calls + 3)]
                        for body in bodies[:3]:  # warm: connections open, statements prepared
                            call(body)
                        t = time.process_time()
                        for body in bodies[3:]:
                            call(body)
                        rounds[name].append((time.process_time() - t) / calls * 1e6)
            for name, v in rounds.items():
                out[(latency, name)] = sorted(v)[1]
        finally:
            stub.stop()
    return out


def run(quick=False, charts_dir=None):
    """Measure; returns (table_lines, target_lines), the table as Markdown."""
    cfg = QUICK if quick else FULL
    workdir = tempfile.mkdtemp(prefix="tms-route-")
    try:
        results, failures = measure(cfg, workdir)
        waited = cpu_after_a_wait(workdir, 30 if quick else 300)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    s = summarize(results)
    table, targets, setup = render(s, failures, cfg, quick)
    cells = []
    for latency in (0.0, STUB_LATENCY_MS):
        lib, base = waited[(latency, "library")], waited[(latency, "baseline")]
        cells.append(f"stub answering after {latency:g} ms: library {lib:.0f} µs, baseline {base:.0f} µs, "
                     f"{lib - base:+.0f} µs")
    targets.append("- CPU per Set Action in one process and thread, without gunicorn and Flask (3 IDs, NORMAL; "
                   "median of 3 interleaved rounds): " + "; ".join(cells) + ". The same work costs more after the "
                   "thread waited for the cluster, and the library does more of its work after that wait")
    if charts_dir:
        os.makedirs(charts_dir, exist_ok=True)
        path = os.path.join(charts_dir, "route-latency.svg")
        draw_chart(s, path)
        targets.append(f"- chart: {path}")
    return [setup, ""] + table, targets


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few requests, targets not judged")
    ap.add_argument("--markdown", help="also write the table and the targets to this file")
    ap.add_argument("--charts", help="draw route-latency.svg into this directory")
    args = ap.parse_args(argv)

    def terminated(*_):
        raise SystemExit(128 + signal.SIGTERM)  # so the finally blocks stop the servers

    signal.signal(signal.SIGTERM, terminated)
    started = time.monotonic()
    table, targets = run(args.quick, args.charts)
    print("\n".join(table))
    print("\ntargets" + (" (smoke run: too few requests to judge)" if args.quick else ""))
    print("\n".join(targets))
    print(f"\n({time.monotonic() - started:.0f} s)")
    if args.markdown:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
        with open(args.markdown, "w") as f:
            f.write(f"<!-- generated by bench/route.py{' --quick' if args.quick else ''} -->\n"
                    f"Machine: {machine}; Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}.\n\n"
                    + "\n".join(table) + "\n\n" + "\n".join(targets) + "\n")
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
