# Source this file (bash): it starts a throwaway PostgreSQL 15 server for the tests and exports
#   MFM_TEST_PG_URL       postgresql+psycopg://postgres@/mfm?host=$MFM_PG_DIR (trust auth)
#   MFM_TEST_PG_AUTH_URL  the same database as role mfm_pw with its (right) password, which
#                         the server checks (scram-sha-256): the wrong-password test needs it
#   MFM_PG_DIR            the temporary folder (cluster, Unix socket, log)
# and defines pg_stop, which stops the server and removes the folder. The caller sets the trap:
#   . .ci/pg-start.sh && trap pg_stop EXIT
# The server listens on a Unix socket in $MFM_PG_DIR only (no TCP port), and trades
# durability for speed (fsync off): its data lives as long as the test session.

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
if [ ! -x "$PG_BIN/initdb" ]; then
  _sudo=""; [ "$(id -u)" -ne 0 ] && _sudo="sudo"
  $_sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -qq postgresql-15
fi

MFM_PG_DIR="$(mktemp -d /tmp/mfm-pg.XXXXXX)"
export MFM_PG_DIR
chmod 755 "$MFM_PG_DIR"

# The server refuses to run as root: run it as the postgres user then.
if [ "$(id -u)" -eq 0 ]; then
  chown postgres "$MFM_PG_DIR"
  _pg() { su postgres -s /bin/sh -c "$*"; }
else
  _pg() { sh -c "$*"; }
fi

pg_stop() {
  if [ -n "${MFM_PG_DIR:-}" ] && [ -f "$MFM_PG_DIR/pg/postmaster.pid" ]; then
    _pg "'$PG_BIN/pg_ctl' -D '$MFM_PG_DIR/pg' -m fast -w stop" >/dev/null 2>&1 || true
  fi
  [ -n "${MFM_PG_DIR:-}" ] && rm -rf "$MFM_PG_DIR"
}

_pg "'$PG_BIN/initdb' -D '$MFM_PG_DIR/pg' -A trust -U postgres" >"$MFM_PG_DIR/initdb.log" 2>&1 \
  || { cat "$MFM_PG_DIR/initdb.log" >&2; pg_stop; return 1 2>/dev/null || exit 1; }
# First match wins: the password role checks its password, everyone else is trusted.
_pg "printf 'local all mfm_pw scram-sha-256\nlocal all all trust\n' > '$MFM_PG_DIR/pg/pg_hba.conf'"
_pg "'$PG_BIN/pg_ctl' -D '$MFM_PG_DIR/pg' -l '$MFM_PG_DIR/pg.log' -w \
  -o \"-k $MFM_PG_DIR -c listen_addresses= -c fsync=off -c synchronous_commit=off \
  -c full_page_writes=off -c max_connections=200\" start" >/dev/null \
  || { cat "$MFM_PG_DIR/pg.log" >&2; pg_stop; return 1 2>/dev/null || exit 1; }
psql -h "$MFM_PG_DIR" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
  -c "CREATE DATABASE mfm" \
  -c "CREATE ROLE mfm_pw LOGIN PASSWORD 'mfm-right-password'" \
  -c "GRANT ALL ON DATABASE mfm TO mfm_pw" >/dev/null

export MFM_TEST_PG_URL="postgresql+psycopg://postgres@/mfm?host=$MFM_PG_DIR"
export MFM_TEST_PG_AUTH_URL="postgresql+psycopg://mfm_pw:mfm-right-password@/mfm?host=$MFM_PG_DIR"
