"""ASGI entry point for multi-process serving (``uvicorn hilos.asgi:app --workers N``)."""

from __future__ import annotations

import os

from hilos.app import create_app
from hilos.core.logging import configure_logging
from hilos.core.settings import get_settings

_settings = get_settings()
configure_logging(level=_settings.log_level, json_lines=_settings.log_json)
app = create_app(
    _settings,
    run_worker=os.environ.get("HILOS_RUN_WORKER") == "1",
    run_smtp=os.environ.get("HILOS_RUN_SMTP") == "1",
)
