"""JSON logs: one object per line with timestamp, level and event; the request id of the
caller's ``X-Request-ID`` on every line of its request and echoed in the answer; the stage on a
worker's lines; the event's id and topic on what a handler logs; libraries' lines alike."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from hilos import worker as worker_module
from hilos.app import create_app
from hilos.core.bus import BusEvent, InProcessBus
from hilos.core.ids import new_id
from hilos.core.logging import configure_logging
from hilos.core.outbox import emit, relay
from hilos.core.settings import Settings
from hilos.worker import Worker
from tests.conftest import TenantHandle


class JsonLines:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def lines(self) -> list[dict[str, Any]]:
        raw = [line for line in self.stream.getvalue().splitlines() if line.strip()]
        return [json.loads(line) for line in raw]  # every line is one JSON object

    def of(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["event"] == event]


@pytest.fixture
def json_logs() -> Iterator[JsonLines]:
    """``HILOS_LOG_JSON=true`` into a buffer; the test session's logging is restored after."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(level="info", json_lines=True, stream=stream)
    yield JsonLines(stream)
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def fresh_client(engine: AsyncEngine) -> Any:
    """An app built after logging was configured, as ``hilos serve`` builds it (loggers made
    earlier keep the configuration they were first used with)."""
    app = create_app(
        Settings(database_url=str(engine.url), bus_url="memory://"),
        engine=engine,
        bus=InProcessBus(),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hilos.test") as client:
        yield client


async def test_a_requests_line_is_json_with_the_callers_request_id_echoed_back(
    json_logs: JsonLines, fresh_client: httpx.AsyncClient
) -> None:
    response = await fresh_client.get("/healthz", headers={"X-Request-ID": "ticket-4711.a"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "ticket-4711.a"
    [line] = json_logs.of("http.request")
    assert line["request_id"] == "ticket-4711.a"
    assert (line["level"], line["method"], line["path"], line["status"]) == (
        "info",
        "GET",
        "/healthz",
        200,
    )
    assert line["timestamp"].endswith("Z")


async def test_an_unusable_request_id_is_replaced_and_the_new_one_is_on_the_line(
    json_logs: JsonLines, fresh_client: httpx.AsyncClient
) -> None:
    response = await fresh_client.get("/healthz", headers={"X-Request-ID": "x" * 65})
    given = response.headers["x-request-id"]
    assert given != "x" * 65
    assert len(given) == 32
    [line] = json_logs.of("http.request")
    assert line["request_id"] == given
    # Each request has its own id, and none is left bound after the request.
    second = await fresh_client.get("/healthz")
    assert second.headers["x-request-id"] not in (given, "")
    structlog.get_logger("after").info("outside.request")
    [outside] = json_logs.of("outside.request")
    assert "request_id" not in outside


async def test_an_error_answer_and_a_librarys_warning_carry_the_request_id(
    json_logs: JsonLines, fresh_client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    response = await fresh_client.get(
        f"/v1/customers/{new_id()}", headers={**tenant.headers, "X-Request-ID": "req-404"}
    )
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "req-404"
    [line] = json_logs.of("http.request")
    assert (line["status"], line["request_id"]) == (404, "req-404")

    # A library logging through the standard module (nats-py, SQLAlchemy, uvicorn as `hilos
    # serve` runs it) inside a request. (uvicorn's own loggers are left alone here: servers that
    # tests start in-process configure them their own way.)
    structlog.contextvars.bind_contextvars(request_id="req-lib")
    try:
        logging.getLogger("nats.aio.client").warning("a library warns %s", "here")
        logging.getLogger("nats.aio.client").info("below warning: not printed")
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    [library] = json_logs.of("a library warns here")
    assert (library["level"], library["logger"], library["request_id"]) == (
        "warning",
        "nats.aio.client",
        "req-lib",
    )
    assert json_logs.of("below warning: not printed") == []


class BrokenBus(InProcessBus):
    async def publish(self, **_event: Any) -> None:
        raise ConnectionError("the bus is down")


async def test_a_failing_worker_stage_logs_its_stage_and_its_traceback(
    json_logs: JsonLines, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module's logger may have been first used before this test configured JSON.
    monkeypatch.setattr(worker_module, "log", structlog.get_logger("hilos.worker"))
    async with app.state.sessionmaker() as session, session.begin():
        await emit(session, tenant_id=new_id(), topic="test.logged", payload={})
    worker = Worker(sessionmaker=app.state.sessionmaker, bus=BrokenBus(), interval=1.0)
    worker.http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(503))
    )
    try:
        await worker.run_once()
    finally:
        await worker.close()
    [failure] = [
        line for line in json_logs.of("worker.stage_failed") if line["stage"] == "published"
    ]
    assert failure["level"] == "error"
    assert "ConnectionError: the bus is down" in failure["exception"]
    while await relay(app.state.sessionmaker, app.state.bus):  # what the broken bus left
        pass


async def test_what_a_handler_logs_while_it_hears_an_event_names_the_event(
    json_logs: JsonLines, app: Any
) -> None:
    tenant_id = new_id()
    bus = InProcessBus()
    handler_log = structlog.get_logger("a.consumer")

    async def handler(event: BusEvent) -> None:
        if event.tenant_id == tenant_id:
            handler_log.info("consumer.heard")

    await bus.subscribe(durable="test-logging", handler=handler)
    async with app.state.sessionmaker() as session, session.begin():
        event_id = await emit(session, tenant_id=tenant_id, topic="test.heard", payload={})
    while await relay(app.state.sessionmaker, bus):
        pass
    [line] = json_logs.of("consumer.heard")
    assert (line["event_id"], line["topic"]) == (event_id, "test.heard")
    structlog.get_logger("after").info("after.relay")
    [after] = json_logs.of("after.relay")
    assert "event_id" not in after
