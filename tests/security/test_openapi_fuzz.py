"""schemathesis over the whole OpenAPI document: no operation answers any input with a 5xx.

The app runs in-process on its own SQLite file, with an admin key of a business that has one
of everything (``tests.security.world``). Every operation gets valid and invalid inputs
generated from its schema (schemathesis's positive and negative modes); wherever a path names
an object, it names a real one of that business, so handlers run on real rows with whatever
body was generated, not only the "not found" branch. The one check is schemathesis's
``not_a_server_error``: bad input must be a 4xx, never a 500.

Examples per operation are few and derandomized, so a run is reproducible and stays within a
couple of minutes; ``HILOS_FUZZ_EXAMPLES`` raises them for a longer hunt.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from hilos.app import create_app
from hilos.core import service as core_service
from hilos.core.settings import Settings
from hilos.core.tenancy import TenantContext
from hilos.migrate import upgrade
from tests.conftest import TenantHandle
from tests.security.world import Business, build_business

EXAMPLES = int(os.environ.get("HILOS_FUZZ_EXAMPLES", "15"))


async def _open_business(app: Any) -> Business:
    """Migrate the fuzz database and build the business, then let go of every connection:
    the requests run on schemathesis's own event loop, which must open its own."""
    engine = app.state.engine
    await upgrade(engine)
    async with app.state.sessionmaker() as session, session.begin():
        tenant, key = await core_service.create_tenant(session, name="Tienda Fuzz")
        handle = TenantHandle(id=tenant.id, key=key, context=TenantContext.from_row(tenant))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hilos.test") as client:
        business = await build_business(client, app, handle)
    await engine.dispose()
    return business


def _fuzz(operation: Any, mode: GenerationMode, business: Business, client: Any) -> None:
    path = operation.path
    headers = business.tenant.headers

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def examples(case: Any) -> None:
        for parameter in list(case.path_parameters or {}):
            real = business.id_for(path, parameter)
            if real is not None:
                case.path_parameters[parameter] = real
        response = case.call(session=client, headers=headers)
        case.validate_response(response, checks=[not_a_server_error])

    examples()


def _modes(operation: Any) -> list[GenerationMode]:
    """Valid inputs always; invalid ones where a query or a body can be wrong (a path's ids
    are free strings: none of them is invalid)."""
    if len(operation.query) or len(operation.body):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def test_no_operation_answers_a_server_error(tmp_path: Path) -> None:
    app = create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}", bus_url="memory://")
    )
    business = asyncio.run(_open_business(app))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = 0
    try:
        with asgi.get_client(app) as client:
            for result in schema.get_all_operations():
                operation = result.ok()
                operations += 1
                for mode in _modes(operation):
                    try:
                        _fuzz(operation, mode, business, client)
                    except Unsatisfiable:
                        # Only strings in its path, or a body whose every value is valid:
                        # there is no invalid input of this operation to send.
                        pass
                    except Exception as error:  # every failing operation, not only the first
                        failures.append(f"{operation.label} ({mode.value}): {error}")
    finally:
        asgi.shutdown_lifespans()
    assert operations > 150
    assert not failures, f"{len(failures)} operations answered a 5xx:\n" + "\n\n".join(failures)
