"""A TMS cluster for bench/route.py: answers every POST as /tms/v1/set/action does in
bindings/python/examples/stub_cluster.py, after a FIXED latency, and records nothing.

Its own process (so the benchmark's client threads do not share its GIL) on a free loopback
port, which it prints as its first line. Run: python bench/route_stub.py --latency-ms 20
"""

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real cluster's front end
    # The headers and the body are two writes: with Nagle on, the second waits for the client's
    # delayed ACK (up to 40 ms on Linux), which would swamp the latency we set.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):  # readiness probe
        self._reply(200, b'{"status": "ok"}')

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b"{}"
        time.sleep(self.server.latency_s)
        try:
            cids = json.loads(body).get("cids", [])
        except (ValueError, AttributeError):
            cids = []
        self._reply(200, json.dumps({"success": True, "message": "Action completed",
                                     "processed": len(cids)}).encode())

    def _reply(self, status, data):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog (5) overflows when 16 callers connect at once (the legacy route opens
    # a connection per call); a dropped SYN is retried after 1 s and would pass for latency.
    request_queue_size = 256


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=float, default=20.0)
    args = ap.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    server.latency_s = args.latency_ms / 1000
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
