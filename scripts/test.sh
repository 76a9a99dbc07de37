#!/usr/bin/env bash
# Install everything and run the checks and the whole test suite (unit, property, integration).
# Integration tests start their own local Kafka + Elasticsearch (noida-db) on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/pytest "$@"
