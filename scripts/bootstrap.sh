#!/usr/bin/env bash
# Create .venv (if needed) and install callstream with the given extras. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
# Real Kafka and Elasticsearch jars for infra/real_engines.py (Maven Central, cached in
# .callstream/engines/; a second run only checks the cache). Optional: skipped without java and mvn.
if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
    .venv/bin/python -m callstream.infra.real_engines resolve --quiet \
        || echo "warning: could not resolve the real Kafka/Elasticsearch engines (infra/real_engines.py)" >&2
else
    echo "java or mvn not found: skipping the real Kafka/Elasticsearch engines (infra/real_engines.py)"
fi
