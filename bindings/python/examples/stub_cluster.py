"""A stand-in for a TMS cluster API on loopback, for the demo and the tests.

Paths choose the behaviour, so one server covers every row of the outcome table:

  POST /tms/v1/set/action   200 {"success": true, ...}
  POST /fail                200 {"success": false, "message": ...}
  POST /html                200 text/html (not JSON)
  POST /unauthorized        401 JSON that echoes the Authorization header back
  POST /error               500 plain text
  POST /slow                waits `slow_seconds` (or until `release()`), then 200; `slow_arrived`
                            is set when a call to it is waiting
  POST /big                 200 with a JSON body of `big_bytes`
  POST /redirect            302 to another host
  POST /bom                 200 JSON preceded by a UTF-8 byte order mark
  POST /bignum              200 JSON with an integer beyond 64 bits
  POST /echo-json           200 JSON that echoes the Authorization header (JSON-escaped)
  POST /echo-body           200 {"success": true, "received": <the request body as text>, "as_json": <it parsed>}
  POST /straddle?at=N       200: N bytes of filler, then the Authorization header, then more
  POST /echo-thrice?at=N    500: N bytes of filler, the token twice, 7 bytes, the token again
  GET  /tms/v1/status       200 {"apps": [...]}
  GET  /tms/v1/get/appstatus?app=ALL&cid=C   200 [{"cid": C, "app": ..., "status": ...}] (the UI's app status)
  GET  /tms/v1/transition/state   200 {"<cid>": {...}} (transition data in the shape the UI reads; the page itself asks v1/get/action?cid=ALL, not stubbed)
  POST /as/token.oauth2     an SSO token endpoint: a form with grant_type=client_credentials,
                            client_id and client_secret "stub-client-secret-42" gets 200
                            {"access_token": ..., "token_type": "Bearer", "expires_in": 7199};
                            any other form 401 {"error": "invalid_client", "error_description": ...}
                            quoting the client_secret it was sent (as careless servers do)

Every request is recorded in `server.requests` (method, path, headers with lowercase names, body,
and `client`: the client's (address, port), which tells the connection it came on).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

#: The client secret the stub's SSO endpoint accepts.
SSO_SECRET = "stub-client-secret-42"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, status, body, content_type="application/json", extra=None):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _record(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(
            {"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
             "client": self.client_address}
        )
        return body

    def do_GET(self):
        self._record()
        if self.path.startswith("/tms/v1/status"):
            self._reply(200, json.dumps({"apps": [{"name": "tms", "status": "READY"}]}))
        elif self.path.startswith("/tms/v1/get/appstatus"):
            query = parse_qs(urlsplit(self.path).query)
            cid = query.get("cid", [""])[0]
            self._reply(200, json.dumps([{"cid": cid, "app": "tms", "status": "READY"},
                                         {"cid": cid, "app": "pe", "status": "PENDING"}]))
        elif self.path.startswith("/tms/v1/transition/state"):
            self._reply(200, json.dumps({"c1": {"state": "TRANS_BEGIN"}, "c2": {"state": "PE_ENABLED"}}))
        else:
            self._reply(404, json.dumps({"error": "not found"}))

    def do_POST(self):
        body = self._record()
        path = self.path.split("?")[0]
        if path == "/tms/v1/set/action":
            try:
                cids = json.loads(body or b"{}").get("cids", [])
            except ValueError:
                cids = []
            self._reply(200, json.dumps({"success": True, "message": "Action completed",
                                         "processed": len(cids)}))
        elif path == "/as/token.oauth2":
            form = parse_qs(body.decode("utf-8", "replace"))
            secret = form.get("client_secret", [""])[0]
            if form.get("grant_type") == ["client_credentials"] and form.get("client_id") and secret == SSO_SECRET:
                self._reply(200, json.dumps({"access_token": "stub-access-token-" + form["client_id"][0],
                                             "token_type": "Bearer", "expires_in": 7199}))
            else:
                self._reply(401, json.dumps({"error": "invalid_client",
                                             "error_description": f"client secret {secret} is not valid"}))
        elif path == "/fail":
            self._reply(200, json.dumps({"success": False, "message": "those CIDs are not ready"}))
        elif path == "/html":
            self._reply(200, "<html><body>gateway page</body></html>", "text/html")
        elif path == "/unauthorized":
            echo = self.headers.get("Authorization", "")
            self._reply(401, json.dumps({"errorCode": "UNAUTHORIZED", "seen": echo}))
        elif path == "/error":
            self._reply(500, "Internal Server Error", "text/plain")
        elif path == "/slow":
            self.server.slow_arrived.set()
            self.server.slow_release.wait(self.server.slow_seconds)
            self._reply(200, json.dumps({"success": True}))
        elif path == "/big":
            filler = "x" * self.server.big_bytes
            self._reply(200, json.dumps({"success": True, "filler": filler}))
        elif path == "/redirect":
            self._reply(302, "", "text/plain", {"Location": "http://example.invalid/elsewhere"})
        elif path == "/bom":
            self._reply(200, b"\xef\xbb\xbf" + json.dumps({"success": True, "n": 1}).encode())
        elif path == "/bignum":
            self._reply(200, '{"success": true, "big": 123456789012345678901234567890, "f": 1.10}')
        elif path == "/echo-body":
            text = body.decode("utf-8", "replace")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            self._reply(200, json.dumps({"success": True, "received": text, "as_json": parsed}))
        elif path == "/echo-json":
            echo = self.headers.get("Authorization", "")
            self._reply(200, json.dumps({"success": True, "seen": echo, "twice": json.dumps(echo)}))
        elif path == "/echo-thrice":
            at = int(self.path.split("at=")[1])
            token = self.headers.get("Authorization", "").removeprefix("Bearer ").encode()
            self._reply(500, b"x" * at + token + token + b"yyyyyzz" + token + b"w" * 300, "text/plain")
        elif path == "/straddle":
            at = int(self.path.split("at=")[1]) if "at=" in self.path else 0
            echo = self.headers.get("Authorization", "").encode()
            self._reply(200, b"x" * at + echo + b"y" * 200, "text/plain")
        else:
            self._reply(404, json.dumps({"error": "not found"}))


class StubCluster:
    """Start with `with StubCluster() as cluster:`; `cluster.base` is its http://127.0.0.1:PORT."""

    def __init__(self, slow_seconds=3.0, big_bytes=64 * 1024, port=0):
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.daemon_threads = True
        self.server.requests = []
        self.server.slow_seconds = slow_seconds
        self.server.slow_arrived = threading.Event()
        self.server.slow_release = threading.Event()
        self.server.big_bytes = big_bytes
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self):
        return self.server.requests

    @property
    def slow_arrived(self):
        """Set once a call to /slow is waiting for its answer: the caller's job is recorded."""
        return self.server.slow_arrived

    def release(self):
        """Answer every waiting (and later) call to /slow now."""
        self.server.slow_release.set()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
