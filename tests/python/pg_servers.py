"""PostgreSQL servers of a test's own, for the tests that stop, restart, fail over or cut off the
server (the shared one scripts/with-postgres.sh starts must stay up for the other suites). Made
with the same binaries (TMS_TEST_PG_BIN, else PATH); as root, initdb and pg_ctl run as the
`postgres` user, which owns the data directories, as initdb demands."""

import os
import shutil
import socket
import subprocess
import tempfile


def _bin(name):
    bindir = os.environ.get("TMS_TEST_PG_BIN")
    return os.path.join(bindir, name) if bindir else name


def _as_owner(args):
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + args


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server on a random loopback port with a private socket directory."""

    def __init__(self, base, name, extra_options=""):
        self.dir = os.path.join(base, name)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.log = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.extra_options = extra_options
        os.makedirs(self.sock)
        os.makedirs(self.data, mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.sock, "postgres")
            shutil.chown(self.data, "postgres")

    def url(self, db="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}?sslmode=disable"

    def _run(self, args, check=True):
        return subprocess.run(_as_owner(args), capture_output=True, text=True, check=check, timeout=120)

    def initdb(self):
        self._run([_bin("initdb"), "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n")
        return self

    def basebackup_of(self, primary):
        """A streaming standby of `primary` (-R writes its primary_conninfo and standby.signal)."""
        self._run([_bin("pg_basebackup"), "-D", self.data, "-R", "-X", "stream", "-h", "127.0.0.1",
                   "-p", str(primary.port), "-U", "postgres"])
        return self

    def start(self):
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} -c wal_level=replica "
                   f"-c max_wal_senders=5 -c hot_standby=on {self.extra_options}")
        done = self._run([_bin("pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", options, "start"],
                         check=False)
        assert done.returncode == 0, done.stdout + done.stderr + open(self.log).read()[-3000:]
        return self

    def stop(self, mode="fast"):
        self._run([_bin("pg_ctl"), "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"], check=False)

    def restart(self, mode="immediate"):
        self.stop(mode)
        return self.start()

    def promote(self):
        self._run([_bin("pg_ctl"), "-D", self.data, "-w", "-t", "60", "promote"])

    def psql(self, sql):
        out = subprocess.run([_bin("psql"), self.url(), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True, check=True, timeout=60)
        return out.stdout.strip()


class Servers:
    """A directory of servers, all stopped and removed at the end (`with Servers() as s:`)."""

    def __enter__(self):
        self.base = tempfile.mkdtemp(prefix="tms-pg-own-")
        os.chmod(self.base, 0o755)
        self.servers = []
        return self

    def new(self, name, extra_options=""):
        server = Server(self.base, name, extra_options)
        self.servers.append(server)
        return server

    def __exit__(self, *exc):
        for s in self.servers:
            s.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
