"""Structured logs (structlog) with a request id on every line logged while serving a request.

The request id comes from the caller's ``X-Request-ID`` header when it sends a sane one, else it
is generated; the response carries it back, so a support ticket can quote it.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import structlog
from prometheus_client import Counter, Histogram

from hilos.core.ids import new_id

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

REQUESTS = Counter("hilos_http_requests_total", "HTTP requests", ["method", "status"])
LATENCY = Histogram("hilos_http_request_seconds", "HTTP request latency", ["method"])


def configure_logging(*, level: str = "info", json_lines: bool = False) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        # Plain tracebacks: rich's, with every local variable, bury the log in pages of text.
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        cache_logger_on_first_use=True,
    )


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
            REQUESTS.labels(method, str(status)).inc()
            LATENCY.labels(method).observe(elapsed)
            self.log.info(
                "http.request",
                method=method,
                path=scope.get("path"),
                status=status,
                ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")
