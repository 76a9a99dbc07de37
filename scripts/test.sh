#!/usr/bin/env bash
# Install everything and run the checks and the whole test suite (unit, property, integration).
#
# Integration tests start their own Kafka + Elasticsearch on free loopback ports, on the engine
# CALLSTREAM_TEST_BACKEND names (docs/engines.md):
#   real      Apache Kafka 4.1 + Elasticsearch 8.19 (Java 17+, Maven once); the tests marked
#             `smoke` then run a second time on the embedded engine, which the demo uses by
#             default. CI (.ci/run) runs this, and so does this script wherever java and mvn exist.
#   embedded  noida-db, pure pip (the default without java or mvn); tests needing what it lacks
#             are skipped with the reason.
# Arguments go to the first pytest run (e.g. `scripts/test.sh tests/unit -q`); with arguments there
# is no second run.
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
if [ -z "${CALLSTREAM_TEST_BACKEND:-}" ]; then
    if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
        backend=real
    else
        backend=embedded
        echo "== java or mvn not found: the tests run on the embedded engine only (docs/engines.md)"
    fi
else
    backend="$CALLSTREAM_TEST_BACKEND"
fi
if [ "$backend" = real ]; then
    # Fails here, with the reason, if Java or Maven or Maven Central is missing.
    .venv/bin/python -m callstream.infra.real_engines resolve
fi
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
# pytest's exit code 5 (no tests collected) fails this script like any other non-zero code.
echo "== pytest on the $backend engine"
CALLSTREAM_TEST_BACKEND="$backend" .venv/bin/pytest "$@"
if [ "$backend" = real ] && [ $# -eq 0 ]; then
    echo "== pytest -m smoke on the embedded engine"
    CALLSTREAM_TEST_BACKEND=embedded .venv/bin/pytest -m smoke tests/integration
fi
