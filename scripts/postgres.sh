#!/usr/bin/env bash
# A local PostgreSQL for the shared-store tests: installs Debian's postgresql when missing (as root),
# starts its cluster, makes a role and a database for the tests, and prints their URL as the last line.
# Idempotent: run it again and it prints the same URL. Messages go to stderr, only the URL to stdout.
set -euo pipefail

ROLE="${REGVIZ_PG_ROLE:-regviz}"
DB="${REGVIZ_PG_DB:-regviz_test}"
# a test database on 127.0.0.1 only: the password keeps the URL in the tests' real, scram-checked form
PASSWORD="${REGVIZ_PG_PASSWORD:-regviz-test}"
START_WAIT_S=30

say() { echo "postgres.sh: $*" >&2; }

as_postgres() {
  # the cluster's superuser is the postgres system user, reached by peer login on the local socket
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install_if_missing() {
  command -v pg_lsclusters >/dev/null 2>&1 && [ -n "$(ls /usr/lib/postgresql 2>/dev/null)" ] && return
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    say "PostgreSQL is not installed and there is no root apt-get to install it"
    return 1
  fi
  say "installing Debian's postgresql"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

cluster() {
  # "version name port status" of the first cluster, creating one when the package left none
  if [ -z "$(pg_lsclusters -h)" ]; then
    local version
    version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    say "creating cluster $version/main"
    pg_createcluster "$version" main >/dev/null
  fi
  pg_lsclusters -h | head -n 1 | awk '{print $1, $2, $3, $4}'
}

start() {
  local version=$1 name=$2 port=$3 status=$4 deadline
  if [ "$status" != online ]; then
    say "starting cluster $version/$name"
    pg_ctlcluster "$version" "$name" start >&2 || service postgresql start >&2
  fi
  deadline=$((SECONDS + START_WAIT_S))
  until pg_isready -q -h 127.0.0.1 -p "$port"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "cluster $version/$name did not accept connections on 127.0.0.1:$port within ${START_WAIT_S}s"
      return 1
    fi
    sleep 0.2
  done
}

make_role_and_db() {
  local port=$1
  as_postgres psql -q -X -v ON_ERROR_STOP=1 -p "$port" -d postgres >/dev/null <<SQL
SELECT format('CREATE ROLE %I LOGIN', '$ROLE')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') \gexec
ALTER ROLE "$ROLE" LOGIN PASSWORD '$PASSWORD';
SELECT format('CREATE DATABASE %I OWNER %I', '$DB', '$ROLE')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB') \gexec
SQL
}

main() {
  install_if_missing
  read -r version name port status < <(cluster)
  start "$version" "$name" "$port" "$status"
  make_role_and_db "$port"
  local url="postgresql://$ROLE:$PASSWORD@127.0.0.1:$port/$DB"
  # proves the password login over TCP works, as the tests will use it
  psql -q -X -v ON_ERROR_STOP=1 "$url" -c "SELECT 1" >/dev/null
  say "ready: database $DB on 127.0.0.1:$port, role $ROLE"
  echo "$url"
}

main
