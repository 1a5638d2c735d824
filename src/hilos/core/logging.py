"""Structured logs (structlog) with a request id on every line logged while serving a request.

The request id comes from the caller's ``X-Request-ID`` header when it sends a sane one, else it
is generated; the response carries it back, so a support ticket can quote it.

With ``HILOS_LOG_JSON=true`` every line is one JSON object with ``timestamp``, ``level`` and
``event``, plus what was bound where it was logged: ``request_id`` during a request, ``stage`` in
a worker stage, ``event_id`` and ``topic`` while an event is relayed or handled. Libraries that
log through the standard ``logging`` module (uvicorn, SQLAlchemy, asyncio, nats-py) go through
the same renderer from ``warning`` up (or from ``HILOS_LOG_LEVEL`` if higher): their info lines
are noise here, and httpx's would print provider URLs, some of which carry a bot token.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, TextIO

import structlog

from hilos.core.ids import new_id
from hilos.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class _HilosHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler ``configure_logging`` installs (found again and replaced on a second
    call, so configuring twice does not print every line twice)."""


def configure_logging(
    *, level: str = "info", json_lines: bool = False, stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard library's root logger to write to ``stream``
    (standard output by default)."""
    threshold = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        # Plain tracebacks: rich's, with every local variable, bury the log in pages of text.
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    handler = _HilosHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _HilosHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(threshold, logging.WARNING))


class RequestIdMiddleware:
    """Pure ASGI middleware (no per-request task) that binds the request id and logs the request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.log = structlog.get_logger("hilos.http")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _SAFE_REQUEST_ID.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or new_id()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(method, str(status)).inc()
            HTTP_LATENCY.labels(method).observe(elapsed)
            self.log.info(
                "http.request",
                method=method,
                path=scope.get("path"),
                status=status,
                ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")
