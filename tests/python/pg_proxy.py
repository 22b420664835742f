"""A loopback TCP proxy in front of a PostgreSQL server that counts round trips: the server's
ReadyForQuery messages ('Z'), one for every Sync of the extended protocol and every simple query,
which a client waits for before it goes on. Statements prepared on a connection once, pipelining
(several statements before one Sync) and statements run in a server-side function all count as
what the client waits for, which is what a call costs on a real network.

It can also cut a connection in place of an answer (`cut_next_answer`) or swallow a request
(`swallow_next_request`). Used by tests/python/test_pg_round_trips.py (asserts the counts) and bench/postgres.py (prints
them). The URL must not ask for TLS (sslmode=disable, as scripts/with-postgres.sh's does): the
proxy reads the stream."""

import re
import socket
import struct
import threading


class RoundTripProxy:
    def __init__(self, url):
        m = re.match(r"^(postgres(?:ql)?://[^@/]*@?)([^/:?]+):(\d+)(.*)$", url)
        if not m:
            raise ValueError("RoundTripProxy needs a URL with one host:port")
        self._prefix, self._host, self._port, self._rest = m.group(1), m.group(2), int(m.group(3)), m.group(4)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._lock = threading.Lock()
        self._count = 0
        self.connections = 0  # accepted so far (a cut connection is replaced by a new one)
        self._sockets = []
        self._cut = 0  # cut the connection at this ReadyForQuery from now (0: never)
        self._swallow = False  # drop the client's next message (see swallow_next_request)
        self.swallowed = threading.Event()
        self._release = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        """The URL through the proxy."""
        return f"{self._prefix}127.0.0.1:{self._listener.getsockname()[1]}{self._rest}"

    def cut_next_answer(self, skip=0):
        """Drop the connection that gets the ReadyForQuery after the next `skip` ones, in place of
        that answer: the server has done the statement (committed it, outside a transaction) and
        the client never hears."""
        with self._lock:
            self._cut = skip + 1

    def swallow_next_request(self):
        """Drop the client's next message in place of passing it on, and hold that connection
        open until `release()`, then close it: the server never sees the statement (a request
        lost on the way, not an answer), and the client hears the connection lost only then.
        `swallowed` is set once the message was dropped."""
        with self._lock:
            self._swallow = True
            self.swallowed.clear()
            self._release.clear()

    def release(self):
        self._release.set()

    @property
    def round_trips(self):
        with self._lock:
            return self._count

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection((self._host, self._port))
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
                self.connections += 1
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, src, dst, from_server):
        pending = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not from_server:
                    with self._lock:
                        swallow, self._swallow = self._swallow, False
                    if swallow:
                        self.swallowed.set()
                        self._release.wait(30)
                        break
                if from_server:
                    # Count the messages of type 'Z' (type byte, then a length that includes itself).
                    pending += data
                    ready = 0
                    while len(pending) >= 5:
                        length = struct.unpack("!I", pending[1:5])[0]
                        if len(pending) < 1 + length:
                            break
                        ready += pending[0:1] == b"Z"
                        pending = pending[1 + length:]
                    if ready:
                        with self._lock:
                            cut = 0 < self._cut <= ready
                            self._cut = 0 if cut else max(0, self._cut - ready) if self._cut else 0
                            self._count += ready
                        if cut:
                            break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                try:
                    s.close()
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
