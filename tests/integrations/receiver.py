"""A webhook receiver for tests: a tiny Starlette app, served on a real local port, that
records every request and answers what the test tells it to (200 unless told otherwise)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.serving import serving


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    # Answers still to give, in order, as (status, headers, text); then 200.
    _answers: list[tuple[int, dict[str, str], str]] = field(default_factory=list)

    def url(self, path: str = "/hooks/erp") -> str:
        return self.base_url + path

    def answer(self, *statuses: int, headers: dict[str, str] | None = None, text: str = "") -> None:
        for status in statuses:
            self._answers.append((status, headers or {}, text or f"answer {status}"))

    def at(self, path: str) -> list[Received]:
        return [request for request in self.requests if request.path == path]

    async def _hook(self, request: Request) -> Response:
        self.requests.append(
            Received(
                path=request.url.path,
                headers={key.lower(): value for key, value in request.headers.items()},
                body=await request.body(),
            )
        )
        status, headers, text = self._answers.pop(0) if self._answers else (200, {}, "ok")
        return PlainTextResponse(text, status_code=status, headers=headers)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._hook, methods=["POST"])])


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    async with serving(receiver.app()) as base_url:
        receiver.base_url = base_url
        yield receiver
