"""The FastAPI application: routers of every domain, JSON errors, health, metrics, lifespan.

``create_app`` takes its settings (and optionally an engine) so tests and the CLI build exactly
the app production runs. With ``run_worker`` (the embedded default of ``hilos serve``) the
background worker runs inside the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from hilos import __version__
from hilos.analytics.audit_api import router as audit_router
from hilos.analytics.kpis_api import router as kpis_router
from hilos.analytics.reviews_api import router as reviews_router
from hilos.analytics.survey_pages import router as survey_pages_router
from hilos.analytics.surveys_api import router as surveys_router
from hilos.channels.api import router as channels_router
from hilos.channels.base import BadPayload
from hilos.channels.files_api import router as files_router
from hilos.channels.registry import load_adapters
from hilos.channels.smtp_server import serve_smtp
from hilos.channels.store import router as stores_router
from hilos.channels.webchat_api import router as webchat_router
from hilos.channels.webhooks import MAX_WEBHOOK_BYTES
from hilos.channels.webhooks import answer as answer_webhook
from hilos.channels.webhooks import router as webhooks_router
from hilos.commerce.carts_api import router as carts_router
from hilos.commerce.catalog_api import router as catalog_router
from hilos.commerce.loyalty_api import router as loyalty_router
from hilos.commerce.orders_api import router as orders_router
from hilos.commerce.stock_api import router as stock_router
from hilos.conversations.api import router as conversations_router
from hilos.conversations.canned_api import router as canned_router
from hilos.core.api import router as tenant_router
from hilos.core.auth import KeyCache
from hilos.core.bus import Bus, make_bus
from hilos.core.db import make_engine, make_sessionmaker
from hilos.core.errors import HilosError
from hilos.core.logging import RequestIdMiddleware
from hilos.core.metrics import exposition
from hilos.core.ratelimit import RateLimits
from hilos.core.settings import Settings
from hilos.customers.api import router as customers_router
from hilos.engagement.assistant_api import router as assistant_router
from hilos.engagement.campaigns_api import router as campaigns_router
from hilos.engagement.journeys_api import router as journeys_router
from hilos.engagement.recommend_api import router as recommend_router
from hilos.engagement.segments_api import router as segments_router
from hilos.engagement.sending_api import router as sending_router
from hilos.engagement.templates_api import router as templates_router
from hilos.integrations.api import router as webhook_endpoints_router
from hilos.matching.api import router as matching_router
from hilos.privacy.api import router as privacy_router
from hilos.routing.api import router as routing_router
from hilos.routing.sla_api import router as sla_router
from hilos.routing.supervisor_api import router as supervisor_api_router
from hilos.tasks.api import router as tasks_router
from hilos.tracking.api import router as tracking_router
from hilos.web.commerce_pages import router as commerce_pages_router
from hilos.web.console import ConsoleError, render_console_error, static_files
from hilos.web.console import router as console_router
from hilos.web.dashboard import router as dashboard_router
from hilos.web.live import router as console_live_router
from hilos.web.matching_pages import router as matching_pages_router
from hilos.web.privacy_pages import router as privacy_pages_router
from hilos.web.supervisor import router as supervisor_router
from hilos.worker import Worker

log = structlog.get_logger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _describe_validation(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    fields = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body",)]
        fields.append({"field": ".".join(location) or "body", "message": error.get("msg", "")})
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return summary or "invalid request", fields


def hilos_error_response(error: HilosError) -> JSONResponse:
    extra: dict[str, Any] = {}
    if isinstance(error.details, dict):
        extra.update(error.details)
    return JSONResponse(
        status_code=error.status_code,
        content=error_body(error.code, error.message, **extra),
        # A refusal may say when to come back (rate limits' Retry-After).
        headers=getattr(error, "headers", None),
    )


def unexpected_error_response(error: Exception) -> JSONResponse:
    log.exception("http.unhandled", error=repr(error))
    return JSONResponse(
        status_code=500, content=error_body("internal", "an unexpected error happened")
    )


class WebhookFastPath:
    """Provider deliveries (``POST /webhooks/{provider}/{channel_id}``) answered without
    FastAPI's routing, dependency solving and inner middleware.

    A signed delivery needs none of them: its route takes only the request, and
    ``channels.webhooks.answer`` checks the channel, the signature, the rate limit and the body
    itself. Profiled in ``benchmarks/scale.py``, the layers it skips took about a third of a
    server's CPU per delivery, more than storing the message. It sits inside
    ``RequestIdMiddleware`` (request id, log line, HTTP metrics) and answers errors exactly as
    the app's handlers do; every other request, the webhooks' GET included, goes through the
    app as before, and the FastAPI route stays for the OpenAPI document.
    """

    def __init__(self, app: Any, *, hilos_app: FastAPI) -> None:
        self.app = app
        self.hilos_app = hilos_app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        parts = scope["path"].split("/")
        if len(parts) != 4 or parts[1] != "webhooks" or not parts[2] or not parts[3]:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.hilos_app
        request = Request(scope, receive)
        try:
            declared = int(request.headers.get("content-length") or 0)
            if declared > MAX_WEBHOOK_BYTES:
                raise BadPayload(
                    f"the body is larger than {MAX_WEBHOOK_BYTES} bytes", code="too_large"
                )
            response = await answer_webhook(parts[2], parts[3], request)
        except HilosError as error:
            response = hilos_error_response(error)
        except ValueError:
            response = hilos_error_response(BadPayload("Content-Length is not a number"))
        except Exception as error:
            response = unexpected_error_response(error)
        await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HilosError)
    async def hilos_error(_request: Request, error: HilosError) -> JSONResponse:
        return hilos_error_response(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        summary, fields = _describe_validation(list(error.errors()))
        return JSONResponse(
            status_code=422,
            content=error_body(
                "invalid", summary, field=fields[0]["field"] if fields else None, fields=fields
            ),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(error.status_code, "error")
        return JSONResponse(
            status_code=error.status_code,
            content=error_body(code, str(error.detail)),
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        return unexpected_error_response(error)


def create_app(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    bus: Bus | None = None,
    run_worker: bool = False,
    run_smtp: bool = False,
) -> FastAPI:
    own_engine = engine is None
    engine = engine or make_engine(settings.database_url, pool_size=settings.database_pool_size)
    sessionmaker = make_sessionmaker(engine)
    bus = bus or make_bus(settings.bus_url)
    worker = Worker(sessionmaker=sessionmaker, bus=bus, interval=settings.worker_interval_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await bus.start()
        task = asyncio.create_task(worker.run_forever()) if run_worker else None
        smtp = await serve_smtp(settings, engine, sessionmaker, worker.wake) if run_smtp else None
        try:
            yield
        finally:
            if smtp is not None:
                await smtp.close()
            if task is not None:
                worker.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # Live pushes to browsers (web chat, console) hear the bus through a fan-out of
            # their own, made when the first browser connects.
            fanout = getattr(app.state, "fanout", None)
            if fanout is not None:
                await fanout.close()
            await bus.close()
            if own_engine:
                await engine.dispose()

    app = FastAPI(
        title="Hilos",
        version=__version__,
        description="Omnichannel customer platform: one customer, one conversation, one stock.",
        lifespan=lifespan,
        # Hilos reports through Prometheus metrics and JSON logs (docs/operations.md). FastAPI's
        # native OpenTelemetry hooks asked for the global providers on every request even with
        # none configured: 3 % of a webhook's CPU in benchmarks/scale.py's profile.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker
    app.state.bus = bus
    app.state.worker = worker
    app.state.key_cache = KeyCache(settings.api_key_cache_seconds)
    app.state.rate_limits = RateLimits(settings)
    app.state.outbox_wakeup = worker.wake
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as error:  # any failure to reach the database means "not ready"
            return JSONResponse(
                status_code=503,
                content=error_body("not_ready", f"database unreachable: {type(error).__name__}"),
            )
        return JSONResponse({"status": "ready", "database": engine.dialect.name})

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def metrics() -> Response:
        # Every process of a multi-process server, when there is more than one (core.metrics).
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    load_adapters()
    for router in (
        tenant_router,
        channels_router,
        webhooks_router,
        webchat_router,
        files_router,
        stores_router,
        customers_router,
        matching_router,
        privacy_router,
        conversations_router,
        canned_router,
        catalog_router,
        stock_router,
        loyalty_router,
        carts_router,
        orders_router,
        assistant_router,
        journeys_router,
        campaigns_router,
        recommend_router,
        segments_router,
        sending_router,
        templates_router,
        webhook_endpoints_router,
        routing_router,
        sla_router,
        supervisor_api_router,
        tasks_router,
        tracking_router,
        console_router,
        console_live_router,
        supervisor_router,
        audit_router,
        kpis_router,
        reviews_router,
        surveys_router,
        survey_pages_router,
        commerce_pages_router,
        privacy_pages_router,
        matching_pages_router,
        dashboard_router,
    ):
        app.include_router(router)
    app.mount("/static", static_files(), name="static")
    app.add_exception_handler(ConsoleError, render_console_error)
    app.add_middleware(WebhookFastPath, hilos_app=app)
    app.add_middleware(RequestIdMiddleware)
    return app
