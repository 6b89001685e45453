#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL of its own, started as the Rust tests start
# theirs (app/src/ssr/store/testing.rs): Debian's server, initdb as the postgres user (it
# refuses root) in a temporary directory, fsync off, a free port on loopback. The command gets
# three empty databases, OFFLOAD_E2E_DATABASE_URL, OFFLOAD_E2E_RESTART_DATABASE_URL and
# OFFLOAD_E2E_FAILOVER_DATABASE_URL; the server
# is stopped and its directory removed when the command ends, however it ends.
set -euo pipefail

initdb=$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
if [ -z "$initdb" ]; then
  echo "PostgreSQL's server is not installed: make test installs Debian's postgresql package" >&2
  exit 1
fi
bin=$(dirname "$(readlink -f "$initdb")")
dir=$(mktemp -d /tmp/offload-e2e-pg-XXXXXX)
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
as_postgres "$bin/initdb" -A trust -U postgres -E UTF8 --locale=C --no-sync -D "$dir/data" >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop() {
  as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o \
  "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off" \
  start >/dev/null
for db in offload_e2e offload_e2e_restart offload_e2e_failover; do
  "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE $db"
done
export OFFLOAD_E2E_DATABASE_URL="postgres://postgres@127.0.0.1:$port/offload_e2e"
export OFFLOAD_E2E_RESTART_DATABASE_URL="postgres://postgres@127.0.0.1:$port/offload_e2e_restart"
export OFFLOAD_E2E_FAILOVER_DATABASE_URL="postgres://postgres@127.0.0.1:$port/offload_e2e_failover"
"$@"
