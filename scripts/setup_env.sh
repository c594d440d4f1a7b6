#!/usr/bin/env bash
# Create .venv (if missing) and install cmrseg into it: the CPU torch 2.13.0 wheel first, then the package
# with the extras in CMRSEG_EXTRAS (default test,onnx; add distributed for Ray). Reinstalls when pyproject.toml changes.
# Usage: source scripts/setup_env.sh   (sourced by demo.sh and test.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CMRSEG_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
EXTRAS="${CMRSEG_EXTRAS:-test,onnx}"
STAMP="$VENV/.cmrseg-install"
WANTED="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16) $EXTRAS"
if ! "$VENV/bin/python" -c "import cmrseg, torch" >/dev/null 2>&1 || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANTED" ]; then
  echo "==> installing torch==2.13.0 (CPU wheel) and cmrseg[$EXTRAS]"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]"
  echo "$WANTED" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
