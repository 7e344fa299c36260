#!/usr/bin/env bash
# Set everything up, build the index if needed, and serve the chat UI, widget and API
# on http://127.0.0.1:7860 (local Chroma index under index/, local model, no keys).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/assistant serve "$@"
