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

exec python -m pytest "$@"
