#!/usr/bin/env bash
# Install callstream and run the main job end to end on embedded local servers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
exec .venv/bin/callstream demo "$@"
