#!/usr/bin/env bash
# Set everything up (including Debian's chromium for the browser tests, PostgreSQL and Redis for the store
# and rate-limit tests, and llama.cpp's server for the real-model tests), then run lint, type checks and the
# whole test suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --browser --services --llama
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False GRADIO_ANALYTICS_ENABLED=False
echo "== ruff"
.venv/bin/ruff check assistant tests evals scripts app.py
.venv/bin/ruff format --check assistant tests evals scripts app.py
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest "$@"
