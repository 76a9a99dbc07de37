#!/usr/bin/env bash
# Install everything and run the checks and the whole test suite (unit, property, integration).
# Integration tests start their own local Kafka + Elasticsearch (noida-db) on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
# The HTML report's browser test needs Chromium (Debian's package); skipped with a reason without it.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "== installing chromium for the HTML report's browser test"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
        || echo "chromium could not be installed: the browser test will be skipped"
fi
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/pytest "$@"
