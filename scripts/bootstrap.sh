#!/usr/bin/env bash
# Create .venv (if needed) and install callstream with the given extras. Idempotent.
# With a lock for the extras (requirements/dev.lock, requirements/image.lock; scripts/lock.sh),
# the dependencies come from it, each checked against its hashes, and callstream itself is then
# installed editable without dependencies; other extras resolve from pyproject.toml as they stand.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
if [ -f "requirements/${extras}.lock" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
        -r "requirements/${extras}.lock"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
else
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
fi
# Real Kafka and Elasticsearch jars for infra/real_engines.py (Maven Central, cached in
# .callstream/engines/; a second run only checks the cache). Optional: skipped without java and mvn.
if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
    .venv/bin/python -m callstream.infra.real_engines resolve --quiet \
        || echo "warning: could not resolve the real Kafka/Elasticsearch engines (infra/real_engines.py)" >&2
else
    echo "java or mvn not found: skipping the real Kafka/Elasticsearch engines (infra/real_engines.py)"
fi
