#!/usr/bin/env bash
# Installs everything the tests need, then runs the whole suite (unit, app, browser, bench smoke).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not browser"`.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# the browser tests drive Debian's chromium: playwright can't download its own browser here
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: no chromium and no root apt-get: the browser tests will be skipped" >&2
  fi
fi

# real IMDB reviews for the tests that need them (they skip when the file is absent)
if [ -z "${REGVIZ_IMDB_PATH:-}" ] && [ -f ../shared/data/imdb_acl.npz ]; then
  REGVIZ_IMDB_PATH="$(cd ../shared/data && pwd)/imdb_acl.npz"
  export REGVIZ_IMDB_PATH
fi

# a local PostgreSQL for the shared-store tests (tests/test_store_postgres.py skips without one, except in CI)
if [ -z "${REGVIZ_TEST_POSTGRES:-}" ]; then
  if REGVIZ_TEST_POSTGRES="$(bash scripts/postgres.sh | tail -n 1)" && [ -n "$REGVIZ_TEST_POSTGRES" ]; then
    export REGVIZ_TEST_POSTGRES
  elif [ "${CI:-}" = true ]; then
    echo "error: scripts/postgres.sh could not start PostgreSQL; CI needs it for the store tests" >&2
    exit 1
  else
    unset REGVIZ_TEST_POSTGRES
    echo "note: no PostgreSQL (scripts/postgres.sh failed): its store tests will be skipped" >&2
  fi
fi

exec python -m pytest "$@"
