#!/usr/bin/env bash
# Usage: scripts/with-postgres.sh COMMAND [ARGS...]
#
# Runs COMMAND with a PostgreSQL server for the test suites:
#  - TMS_TEST_PG_URL set: that server is used as it is (a superuser URL; the tests make and drop
#    their own schemas in it). For the password and TLS tests set TMS_TEST_PG_PW_URL (a role
#    that logs in with a password) and TMS_TEST_PG_TLS_URL / TMS_TEST_PG_CA too.
#  - otherwise a throwaway cluster is started here: initdb into a temp dir (as the `postgres`
#    user when run as root: initdb refuses root), a private socket dir, a random loopback port,
#    trust auth for the test superuser, scram-sha-256 for a password role, TLS with a CA made
#    here; it is stopped and removed on exit, whatever COMMAND does.
# A server that cannot be had fails loudly: the PostgreSQL suites never skip.
set -euo pipefail

if [ -n "${TMS_TEST_PG_URL:-}" ]; then
  exec "$@"
fi

bindir=""
if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
  bindir=$(pg_config --bindir)
elif command -v initdb >/dev/null; then
  bindir=$(dirname "$(command -v initdb)")
else
  # Debian keeps the server binaries in a versioned directory, not on PATH.
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "with-postgres: no PostgreSQL server binaries (initdb) found; install postgresql (.ci/run does)" >&2
  exit 1
fi

run_as=()
owner=$(id -un)
if [ "$(id -u)" = 0 ]; then
  run_as=(runuser -u postgres --)
  owner=postgres
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/tms-pg-XXXXXX")
chmod 755 "$dir"
mkdir -p "$dir/data" "$dir/sock" "$dir/tls" "$dir/log"
chown -R "$owner" "$dir/data" "$dir/sock" "$dir/tls" "$dir/log"
chmod 700 "$dir/data"

stop() {
  "${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT INT TERM

"${run_as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 || {
  cat "$dir/initdb.log" >&2
  exit 1
}

# TLS: a CA and a server certificate for 127.0.0.1 and localhost, made here.
"$(dirname "$0")/make-test-ca.sh" "$dir/tls" "tms test PG CA"
chown -R "$owner" "$dir/tls"

# Who may log in how: the password role must show a password, everyone else is trusted; TLS is
# offered on every TCP connection.
cat >"$dir/data/pg_hba.conf" <<'EOF'
local all all trust
host  all tms_pw 127.0.0.1/32 scram-sha-256
host  all all    127.0.0.1/32 trust
EOF

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
opts="-c listen_addresses=127.0.0.1 -p $port -k $dir/sock -c ssl=on -c ssl_cert_file=$dir/tls/server.pem"
opts="$opts -c ssl_key_file=$dir/tls/server.key -c fsync=on -c max_connections=200"
"${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log/server.log" -w -o "$opts" start >/dev/null || {
  cat "$dir/log/server.log" >&2
  exit 1
}

psql_bin="$bindir/psql"
[ -x "$psql_bin" ] || psql_bin=psql
"$psql_bin" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
  -c "CREATE ROLE tms_pw LOGIN PASSWORD 'right-password' CREATEDB" \
  -c "CREATE DATABASE tms_test" -c "GRANT ALL ON DATABASE tms_test TO tms_pw" >/dev/null
"$psql_bin" -X -q -h 127.0.0.1 -p "$port" -U postgres -d tms_test -c "GRANT ALL ON SCHEMA public TO tms_pw" >/dev/null

export TMS_TEST_PG_URL="postgresql://postgres@127.0.0.1:$port/tms_test?sslmode=disable"
export TMS_TEST_PG_PW_URL="postgresql://tms_pw:right-password@127.0.0.1:$port/tms_test?sslmode=disable"
export TMS_TEST_PG_TLS_URL="postgresql://postgres@127.0.0.1:$port/tms_test"
export TMS_TEST_PG_CA="$dir/tls/ca.pem"
export TMS_TEST_PG_BIN="$bindir"
echo "with-postgres: throwaway server ($("$bindir/postgres" --version)) on 127.0.0.1:$port" >&2
"$@"
