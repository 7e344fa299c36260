"""Start the one server (chat at /, API under /api, widget at /widget.js) from settings: ``python app.py``."""

from __future__ import annotations

import sys

from assistant.errors import AssistantError
from assistant.launch import serve
from assistant.settings import load_settings

if __name__ == "__main__":
    try:
        serve(load_settings())
    except (AssistantError, ValueError) as error:
        sys.stderr.write(f"Error: {error}\n")
        sys.exit(2)
