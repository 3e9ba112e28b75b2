#!/usr/bin/env bash
# Install everything the test suite needs into .venv and run the whole suite.
# Database tests run on SQLite, and on PostgreSQL too when EMAILEXP_TEST_POSTGRES_URL is set,
# e.g. EMAILEXP_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test
# Browser tests drive Debian's Chromium; it is installed here when missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the browser tests..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null) \
        || echo "warning: could not install chromium; browser tests will be skipped"
fi

.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
