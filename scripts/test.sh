#!/usr/bin/env bash
# One command for the tests: sets up .venv if needed, then runs the whole suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
python -m pytest -q "$@"
