#!/usr/bin/env bash
# make-test-ca.sh DIR CA_NAME: a throwaway CA (DIR/ca.pem) and a server certificate it signed for
# 127.0.0.1 and localhost (DIR/server.pem, DIR/server.key, mode 600), valid two days: the TLS
# tests' internal CA (tests/python/test_edges.py) and the test PostgreSQL server's
# (scripts/with-postgres.sh).
set -euo pipefail
cd "$1"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=$2" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
  -extfile ext.cnf >/dev/null 2>&1
chmod 600 server.key
