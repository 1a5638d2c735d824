"""The real app behind a real Uvicorn server on a free local port, in the test's event loop.

For what the in-process ASGI transport cannot do: WebSockets, Server-Sent Events streams, and a
browser. The app is the tests' ``app`` (or one built like it); the lifespan is left to the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

# Open streams (a console's events, a chat's socket) do not end by themselves: past this, a
# stopping server cuts them rather than wait.
GRACEFUL_SHUTDOWN_SECONDS = 5


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` served by Uvicorn on a free local port; yields its ``http://`` base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
