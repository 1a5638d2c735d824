"""The security sweep: every route of the app, read from its route table, called three ways.

1. With another business's credentials and this business's ids (every route with a path
   parameter): the answer is 404, the same as for an id that does not exist. Both businesses
   are built alike (``tests.security.world``), so a body that names other objects names the
   caller's own: only the path's id can be refused.
2. Without credentials: 401 under ``/v1``; the console sends strangers to sign in.
3. With an agent's key (or an agent's console session) where the route needs a supervisor or an
   admin: 403.

The routes come from the app the fixtures build, so a new endpoint is swept the day it is added:
a path parameter the world has no id for, a route that answers anything but 404 to another
business, a ``/v1`` route that answers a stranger, all fail here with the route's name. The
exceptions are listed below, each with its reason.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.app import create_app
from hilos.core import service as core_service
from hilos.core.bus import InProcessBus
from hilos.core.deps import CurrentPrincipal, DbSession
from hilos.core.errors import NotFound
from hilos.core.settings import Settings
from hilos.core.tenancy import TenantContext
from hilos.customers.models import Customer
from tests.conftest import TenantHandle
from tests.security.world import PARAMETER_SOURCES, PASSWORD, Business, build_business

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

# Routes whose path parameters are not the caller's tenant's objects: nobody calls them with a
# tenant's key, so "another tenant's id" has no meaning there. Each authenticates otherwise.
NOT_TENANT_SCOPED = {
    "/webhooks/{provider}/{channel_id}": "providers' webhooks: signed with the channel's secret",
    "/webchat/{channel_id}/widget.js": "the public chat widget of a site",
    "/webchat/{channel_id}/config": "the public chat widget of a site",
    "/webchat/{channel_id}/sessions": "a visitor opens a chat session (its own token)",
    "/webchat/{channel_id}/messages": "a visitor's messages (the session token)",
    "/webchat/{channel_id}/{path:path}": "CORS preflight of the widget",
    "/v1/engagement/unsubscribe/{token}": "an unsubscribe link: the signed token is the key",
    "/survey/{token}": "a survey answer page: the signed token is the key",
}

# Routes a stranger may call: the credential is something else, or there is none to have.
PUBLIC = {
    "/healthz": "load balancers' health check",
    "/readyz": "load balancers' readiness check",
    "/metrics": "Prometheus scrape (keep it on an internal network)",
    "/webhooks/{provider}/{channel_id}": "providers' webhooks: verified by their signature",
    "/v1/engagement/unsubscribe/{token}": "an unsubscribe link: the signed token is the key",
    "/survey/{token}": "a survey answer page: the signed token is the key",
    "/": "the console's front door: redirects to sign in",
    "/login": "the console's sign-in form",
}
PUBLIC_PREFIXES = {"/webchat/": "the web chat widget: public, then the visitor's own token"}

# Whatever else a route needs, these must never be open to less than an admin.
ADMIN_ONLY = (
    re.compile(r"^/v1/api-keys"),
    re.compile(r"^/v1/users"),
    re.compile(r"^/v1/webhook-endpoints"),
    re.compile(r"^/v1/webhook-deliveries"),
    re.compile(r"^/v1/blocked-values"),
)
ADMIN_ONLY_WRITES = (re.compile(r"^/v1/tenant$"), re.compile(r"^/v1/channels"))

# Console dependencies that admit only some roles (the console's own, not the API's).
CONSOLE_ROLE_GATES = {
    "_supervisor",
    "_supervisor_form",
    "_analyst",
    "_price_manager",
    "_price_manager_form",
}

Ids = dict[str, str]

# A plausible body for each route that takes one, built from the *caller's* own ids.
JSON_BODIES: dict[tuple[str, str], Callable[[Ids], Any]] = {
    ("PATCH", "/v1/channels/{channel_id}"): lambda _: {"name": "Renombrado"},
    ("POST", "/v1/stores/{channel_id}/interactions"): lambda _: {
        "customer": {"identities": [{"kind": "email", "value": "visita@example.org"}]},
        "notes": "Preguntó por la camisa",
    },
    ("PATCH", "/v1/customers/{customer_id}"): lambda _: {"name": "Otro nombre"},
    ("POST", "/v1/customers/{customer_id}/consents"): lambda _: {
        "purpose": "marketing",
        "channel_kind": "email",
        "granted": True,
    },
    ("PATCH", "/v1/conversations/{conversation_id}"): lambda _: {"status": "pending"},
    ("POST", "/v1/conversations/{conversation_id}/messages"): lambda _: {
        "text": "Una nota",
        "private": True,
    },
    ("POST", "/v1/messages/{message_id}/receipts"): lambda _: {"status": "delivered"},
    ("PATCH", "/v1/canned-responses/{response_id}"): lambda _: {"title": "Otro"},
    ("POST", "/v1/canned-responses/{response_id}/render"): lambda ids: {
        "conversation_id": ids["conversation_id"]
    },
    ("POST", "/v1/carts/{cart_id}/checkout"): lambda _: {
        "channel": "web",
        "idempotency_key": "sweep-checkout",
    },
    ("POST", "/v1/orders/{order_id}/status"): lambda _: {"status": "delivered"},
    ("PATCH", "/v1/knowledge/articles/{article_id}"): lambda _: {"title": "Otro"},
    ("PATCH", "/v1/journeys/{journey_id}"): lambda _: {"name": "Otro"},
    ("PUT", "/v1/products/{product_id}/aliases"): lambda _: {"aliases": ["camiseta"]},
    ("PATCH", "/v1/segments/{segment_id}"): lambda _: {"name": "Otro"},
    ("PATCH", "/v1/templates/{template_id}"): lambda _: {"name": "otro"},
    ("POST", "/v1/templates/{template_id}/preview"): lambda _: {"channel_kind": "whatsapp"},
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): lambda _: {"description": "ERP"},
    ("PATCH", "/v1/queues/{queue_id}"): lambda _: {"name": "Otra"},
    ("POST", "/v1/queues/{queue_id}/members"): lambda ids: {"agent_id": ids["agent_id"]},
    ("PATCH", "/v1/agents/{agent_id}"): lambda _: {"skills": {"es": 1}},
    ("PUT", "/v1/agents/{agent_id}/presence"): lambda _: {"status": "away"},
    ("POST", "/v1/conversations/{conversation_id}/transfer"): lambda ids: {
        "queue_id": ids["queue_id"]
    },
    ("PATCH", "/v1/sla-policies/{policy_id}"): lambda _: {"name": "Otra"},
    ("PATCH", "/v1/tasks/{task_id}"): lambda _: {"status": "done"},
    # Routes without a path parameter, called by an agent where a supervisor or admin is needed.
    ("PATCH", "/v1/tenant"): lambda _: {"name": "Otra tienda"},
    ("POST", "/v1/api-keys"): lambda _: {"name": "otra", "role": "admin"},
    ("POST", "/v1/users"): lambda _: {
        "email": "nuevo-admin@tienda-prueba.es",
        "name": "Nuevo",
        "password": PASSWORD,
        "role": "admin",
    },
    ("POST", "/v1/channels"): lambda _: {"kind": "api", "name": "Integración"},
    ("POST", "/v1/blocked-values"): lambda _: {"kind": "email", "value": "tienda@example.org"},
    ("POST", "/v1/canned-responses"): lambda _: {
        "shortcut": "adios",
        "title": "Despedida",
        "text": "Hasta pronto",
    },
    ("POST", "/v1/products"): lambda _: {"sku": "GORRO", "name": "Gorro"},
    ("POST", "/v1/locations"): lambda _: {"code": "BCN", "name": "Barcelona", "kind": "store"},
    ("PUT", "/v1/prices"): lambda _: {
        "sku": "CAMISA",
        "channel": "web",
        "amount": 1,
        "currency": "EUR",
    },
    ("PUT", "/v1/price-parity/policy"): lambda _: {"max_gap_percent": 50},
    ("POST", "/v1/stock/movements"): lambda _: {
        "sku": "CAMISA",
        "location": "ALM",
        "quantity": -20,
        "reason": "adjustment",
        "idempotency_key": "sweep-agent",
    },
    ("PUT", "/v1/stock/safety"): lambda _: {"sku": "CAMISA", "location": "ALM", "safety_stock": 5},
    ("PUT", "/v1/carts/settings"): lambda _: {"abandon_after_minutes": 5},
    ("POST", "/v1/knowledge/articles"): lambda _: {
        "title": "Envíos",
        "body": "Gratis desde 50 €",
        "language": "es",
    },
    ("PUT", "/v1/assistant/settings"): lambda _: {"enabled": True},
    ("POST", "/v1/journeys"): lambda _: {
        "name": "Otro",
        "trigger": {"event": "order.placed"},
        "definition": {"start": "t", "steps": [{"id": "t", "type": "add_tag", "tag": "x"}]},
    },
    ("POST", "/v1/campaigns"): lambda ids: {
        "name": "Otra",
        "segment_id": ids["segment_id"],
        "template_id": ids["template_id"],
    },
    ("POST", "/v1/segments"): lambda _: {"name": "Otro", "rule": {"all": []}},
    ("POST", "/v1/engagement/sends"): lambda ids: {
        "customer_id": ids["customer_id"],
        "template_id": ids["template_id"],
        "idempotency_key": "sweep-send",
    },
    ("POST", "/v1/templates"): lambda _: {
        "name": "otra",
        "purpose": "service",
        "variants": {"es": {"text": "Hola"}},
    },
    ("POST", "/v1/webhook-endpoints"): lambda _: {
        "url": "http://127.0.0.1:9/otro",
        "topics": ["order.placed"],
    },
    ("POST", "/v1/queues"): lambda _: {"name": "Otra", "channel_kinds": ["email"]},
    ("POST", "/v1/agents"): lambda _: {
        "email": "otro-agente@tienda-prueba.es",
        "name": "Otro",
        "password": PASSWORD,
    },
    ("PATCH", "/v1/routing/settings"): lambda _: {"sticky_window_seconds": 60},
    ("PUT", "/v1/business-hours"): lambda _: {"weekly": {"mon": [["09:00", "18:00"]]}},
    ("POST", "/v1/sla-policies"): lambda _: {"name": "Otra", "first_response_seconds": 60},
}

# A plausible form for each console form route (the session's CSRF token is added).
FORM_BODIES: dict[str, dict[str, str]] = {
    "/console/conversations/{conversation_id}/reply": {"text": "Hola"},
    "/console/conversations/{conversation_id}/status": {"status": "resolved"},
    "/console/conversations/{conversation_id}/snooze": {"until": "tomorrow"},
    "/console/conversations/{conversation_id}/transfer": {"target": "queue:none", "note": ""},
    "/console/supervisor/conversations/{conversation_id}/move": {"target": "queue:none"},
    "/console/commerce/price-parity/policy": {"max_gap_percent": "10"},
    "/console/presence": {"status": "away"},
}


@dataclass(frozen=True)
class SweptRoute:
    method: str
    path: str
    route: APIRoute
    dependant: Dependant

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def parameters(self) -> list[str]:
        return re.findall(r"{([^}:]+)(?::[^}]+)?}", self.path)

    @property
    def is_console(self) -> bool:
        return self.path.startswith("/console") or self.path == "/logout"

    def required_role(self) -> str | None:
        """The role the route's ``hilos.core.deps._require`` dependency asks for, if any."""
        roles = {
            inspect.getclosurevars(d.call).nonlocals["role"]
            for d in _dependencies(self.dependant)
            if d.call is not None and d.call.__qualname__ == "_require.<locals>.dependency"
        }
        assert len(roles) <= 1, (self.name, roles)
        return roles.pop() if roles else None

    def console_gated(self) -> bool:
        return any(
            getattr(d.call, "__name__", "") in CONSOLE_ROLE_GATES
            for d in _dependencies(self.dependant)
        )


def _dependencies(dependant: Dependant) -> list[Dependant]:
    found = []
    for dependency in dependant.dependencies:
        found.append(dependency)
        found.extend(_dependencies(dependency))
    return found


def swept_routes(app: Any) -> list[SweptRoute]:
    routes = []
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        for method in sorted(context.methods or ()):
            routes.append(
                SweptRoute(
                    method=method,
                    path=str(context.path),
                    route=context.original_route,
                    dependant=context.dependant,
                )
            )
    assert len(routes) > 150, "the route table was not read"
    return routes


def _url(route: SweptRoute, ids: Ids) -> str:
    sources = PARAMETER_SOURCES.get(route.path, {})
    values = {}
    for parameter in route.parameters:
        source = sources.get(parameter, parameter)
        assert source in ids, (
            f"{route.name}: the sweep has no id for {{{parameter}}}; make one in "
            "tests/security/world.py (or map it in PARAMETER_SOURCES)"
        )
        values[parameter] = ids[source]
    return re.sub(r"{([^}:]+)(?::[^}]+)?}", lambda m: values[m.group(1)], route.path)


async def _call(
    client: httpx.AsyncClient,
    route: SweptRoute,
    *,
    path_ids: Ids,
    body_ids: Ids,
    headers: dict[str, str] | None = None,
    csrf: str | None = None,
) -> httpx.Response:
    url = _url(route, path_ids)
    if route.method in ("GET", "DELETE", "OPTIONS", "HEAD"):
        return await client.request(route.method, url, headers=headers)
    if route.is_console:
        form = {**FORM_BODIES.get(route.path, {}), "csrf_token": csrf or ""}
        return await client.request(route.method, url, data=form, headers=headers)
    body = JSON_BODIES.get((route.method, route.path), lambda _: {})(body_ids)
    return await client.request(route.method, url, json=body, headers=headers)


async def _new_tenant(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> TenantHandle:
    async with sessionmaker() as session, session.begin():
        tenant, key = await core_service.create_tenant(session, name=name)
        return TenantHandle(id=tenant.id, key=key, context=TenantContext.from_row(tenant))


@pytest.fixture(scope="module")
async def sweep_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hilos.test") as client:
        yield client


@pytest.fixture(scope="module")
async def business_a(
    app: Any, sweep_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> Business:
    return await build_business(sweep_client, app, await _new_tenant(sessionmaker, "Tienda A"))


@pytest.fixture(scope="module")
async def business_b(
    app: Any, sweep_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> Business:
    return await build_business(sweep_client, app, await _new_tenant(sessionmaker, "Tienda B"))


@dataclass
class ConsoleSession:
    client: httpx.AsyncClient
    csrf: str


async def _console_session(app: Any, email: str) -> AsyncIterator[ConsoleSession]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hilos.test") as browser:
        form = await browser.get("/login")
        token = CSRF.search(form.text)
        assert token is not None
        signed_in = await browser.post(
            "/login", data={"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
        )
        assert signed_in.status_code == 303, signed_in.text
        inbox = await browser.get("/console")
        csrf = CSRF.search(inbox.text)
        assert csrf is not None, inbox.text
        yield ConsoleSession(client=browser, csrf=csrf.group(1))


@pytest.fixture(scope="module")
async def console_of_b_admin(app: Any, business_b: Business) -> AsyncIterator[ConsoleSession]:
    async for session in _console_session(app, business_b.users["admin"]):
        yield session


@pytest.fixture(scope="module")
async def console_of_a_agent(app: Any, business_a: Business) -> AsyncIterator[ConsoleSession]:
    async for session in _console_session(app, business_a.users["agent"]):
        yield session


def _report(failures: list[str], what: str) -> None:
    assert not failures, f"{len(failures)} routes {what}:\n" + "\n".join(failures)


async def cross_tenant_failures(
    routes: list[SweptRoute],
    client: httpx.AsyncClient,
    *,
    owner: Business,
    caller: Business,
    caller_console: ConsoleSession,
) -> tuple[list[str], int]:
    """Each route with ids in its path, called by ``caller`` with ``owner``'s ids."""
    failures = []
    swept = 0
    for route in routes:
        if not route.parameters or route.path in NOT_TENANT_SCOPED:
            continue
        if route.is_console:
            response = await _call(
                caller_console.client,
                route,
                path_ids=owner.ids,
                body_ids=caller.ids,
                csrf=caller_console.csrf,
            )
        else:
            response = await _call(
                client,
                route,
                path_ids=owner.ids,
                body_ids=caller.ids,
                headers=caller.tenant.headers,
            )
        swept += 1
        if response.status_code != 404:
            failures.append(f"{route.name}: {response.status_code} {response.text[:300]}")
    return failures, swept


async def stranger_failures(
    routes: list[SweptRoute], client: httpx.AsyncClient, *, owner: Business
) -> list[str]:
    """Each route but the public ones, called without credentials and with real ids."""
    failures = []
    for route in routes:
        if route.path in PUBLIC or route.path.startswith(tuple(PUBLIC_PREFIXES)):
            continue
        response = await _call(client, route, path_ids=owner.ids, body_ids=owner.ids)
        if route.is_console:
            # The console sends a stranger to sign in (its live stream, an API, says 401).
            to_sign_in = response.status_code == 303 and response.headers.get(
                "location", ""
            ).endswith("/login")
            if not (to_sign_in or response.status_code == 401):
                failures.append(f"{route.name}: {response.status_code} {response.text[:200]}")
        elif response.status_code != 401:
            failures.append(f"{route.name}: {response.status_code} {response.text[:200]}")
        elif response.json()["error"]["code"] != "unauthorized":
            failures.append(f"{route.name}: 401 without the unauthorized code: {response.text}")
    return failures


async def test_another_business_gets_404_for_every_id_in_a_path(
    app: Any,
    sweep_client: httpx.AsyncClient,
    business_a: Business,
    business_b: Business,
    console_of_b_admin: ConsoleSession,
) -> None:
    failures, swept = await cross_tenant_failures(
        swept_routes(app),
        sweep_client,
        owner=business_a,
        caller=business_b,
        caller_console=console_of_b_admin,
    )
    _report(failures, "answered another business's id with something else than 404")
    assert swept > 80


async def test_a_stranger_is_refused_everywhere_but_the_public_routes(
    app: Any, sweep_client: httpx.AsyncClient, business_a: Business
) -> None:
    failures = await stranger_failures(swept_routes(app), sweep_client, owner=business_a)
    _report(failures, "let a caller without credentials in")


async def test_the_sweep_catches_a_route_that_forgets_the_tenant_or_the_key(
    engine: AsyncEngine,
    business_a: Business,
    business_b: Business,
    console_of_b_admin: ConsoleSession,
) -> None:
    """The sweep is only worth something if it fails: two careless routes added to the app."""
    app = create_app(
        Settings(database_url=str(engine.url), bus_url="memory://"),
        engine=engine,
        bus=InProcessBus(),
    )
    careless = APIRouter()

    @careless.get("/v1/careless/customers/{customer_id}")
    async def unscoped(
        customer_id: str, session: DbSession, _principal: CurrentPrincipal
    ) -> dict[str, str]:
        customer = await session.get(Customer, customer_id)  # no tenant_scope: the bug
        if customer is None:
            raise NotFound("customer not found")
        return {"id": customer.id}

    @careless.get("/v1/careless/orders/{order_id}/name")
    async def keyless(order_id: str) -> dict[str, str]:
        return {"id": order_id}

    app.include_router(careless)
    routes = [route for route in swept_routes(app) if route.path.startswith("/v1/careless/")]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hilos.test") as client:
        leaks, _ = await cross_tenant_failures(
            routes,
            client,
            owner=business_a,
            caller=business_b,
            caller_console=console_of_b_admin,
        )
        open_doors = await stranger_failures(routes, client, owner=business_a)
    assert [leak.split(":")[0] for leak in leaks] == [
        "GET /v1/careless/customers/{customer_id}",
        "GET /v1/careless/orders/{order_id}/name",
    ]
    assert [door.split(":")[0] for door in open_doors] == [
        "GET /v1/careless/orders/{order_id}/name"
    ]


async def test_an_agent_is_refused_what_needs_a_supervisor_or_an_admin(
    app: Any,
    sweep_client: httpx.AsyncClient,
    business_a: Business,
    console_of_a_agent: ConsoleSession,
) -> None:
    failures = []
    refused = 0
    for route in swept_routes(app):
        if route.is_console:
            if not route.console_gated():
                continue
            response = await _call(
                console_of_a_agent.client,
                route,
                path_ids=business_a.ids,
                body_ids=business_a.ids,
                csrf=console_of_a_agent.csrf,
            )
        else:
            if route.required_role() is None:
                continue
            response = await _call(
                sweep_client,
                route,
                path_ids=business_a.ids,
                body_ids=business_a.ids,
                headers=business_a.agent_headers,
            )
        refused += 1
        if response.status_code != 403:
            failures.append(f"{route.name}: {response.status_code} {response.text[:200]}")
    _report(failures, "let an agent do what needs a supervisor or an admin")
    assert refused > 60


def test_keys_users_webhooks_and_channel_settings_need_an_admin(app: Any) -> None:
    failures = []
    for route in swept_routes(app):
        writes = route.method not in ("GET", "HEAD", "OPTIONS")
        admin_only = any(p.match(route.path) for p in ADMIN_ONLY) or (
            writes and any(p.match(route.path) for p in ADMIN_ONLY_WRITES)
        )
        if admin_only and route.required_role() != "admin":
            failures.append(f"{route.name}: needs {route.required_role() or 'any key'}")
    _report(failures, "must need the admin role")


def test_every_exception_names_a_route_that_exists(app: Any) -> None:
    paths = {route.path for route in swept_routes(app)}
    stale = sorted(
        (set(NOT_TENANT_SCOPED) | set(PUBLIC) | set(PARAMETER_SOURCES) | set(FORM_BODIES)) - paths
    )
    stale += sorted(f"{m} {p}" for m, p in JSON_BODIES if p not in paths)
    assert stale == [], "exceptions for routes that no longer exist: remove them"
