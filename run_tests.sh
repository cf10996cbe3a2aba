#!/usr/bin/env bash
# Set up .venv (first run only) and run the test suite on CPU. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash tools/setup_env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest -q "$@"
