#!/usr/bin/env bash
# Install emailexp into .venv, create the embedded SQLite database, load the demo data and serve.
# Open http://127.0.0.1:8000 and sign in as demo / demo-password (printed below).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .

mkdir -p instance
if [ -z "${EMAILEXP_SECRET_KEY:-}" ]; then
    # Keep one secret per checkout so tracking URLs stay valid across restarts.
    [ -s instance/secret_key ] || .venv/bin/python -c 'import secrets; print(secrets.token_hex(32))' > instance/secret_key
    export EMAILEXP_SECRET_KEY="$(cat instance/secret_key)"
fi
export EMAILEXP_INSECURE_COOKIES="${EMAILEXP_INSECURE_COOKIES:-1}"   # plain http on localhost
export EMAILEXP_PUBLIC_URL="${EMAILEXP_PUBLIC_URL:-http://${HOST:-127.0.0.1}:${PORT:-8000}}"  # tracking URLs

.venv/bin/emailexp db upgrade
.venv/bin/emailexp demo --reset
# A sign-in for the demo (kept across runs; create-user refuses an existing name, which is fine).
echo "demo-password" | .venv/bin/emailexp create-user demo --role admin --password-stdin 2>/dev/null \
    || echo "user 'demo' already exists"
echo "Open http://${HOST:-127.0.0.1}:${PORT:-8000}/ and sign in as demo / demo-password"
exec .venv/bin/emailexp serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
