#!/usr/bin/env bash
# Regenerate the lock files that CI (scripts/bootstrap.sh) and the image (infra/Dockerfile) install
# from: every dependency pinned with its hashes, for Python 3.11 on any platform. Run after
# changing a dependency in pyproject.toml, and commit the result (tests/unit/test_lock.py fails
# when a lock no longer satisfies pyproject.toml).
#   scripts/lock.sh                 # both locks, keeping the pins that still satisfy pyproject.toml
#   scripts/lock.sh --upgrade       # ... moving every pin to the newest allowed version
set -euo pipefail
cd "$(dirname "$0")/.."
uv=".venv/bin/uv"
[ -x "$uv" ] || uv="uv"
for extra in dev image; do
    "$uv" pip compile pyproject.toml --extra "$extra" --generate-hashes --universal \
        --python-version 3.11 --no-header --quiet "$@" --output-file "requirements/$extra.lock"
done
