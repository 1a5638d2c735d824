"""The demo data of ``hilos demo``: the tenant "Tienda Demo" and a month of its customers' lives.

This module owns one thing: building a believable, deterministic demo tenant through the same
services the API uses (no hand-written rows), so the console, the 360° view and the KPIs have
something real to show. It creates a channel of every kind (and two stores), an admin, a
supervisor and three agents, and about 200 customers with Spanish names (a few from Mexico, a
few who write in English) whose histories cross channels: a question on WhatsApp followed by an
email in the same conversation, a size question in the web chat that ends in a pick-up in store,
a return made in a store and thanked for on Instagram, Segment-style page and track events,
consents, loyalty cards used in stores, and profiles merged when an agent links an account.

Rules it keeps:

* Deterministic: ``random.Random(42)`` drives every choice, so two runs tell the same stories
  (ids, keys and timestamps differ: they come from the real clock).
* Idempotent: a second run does not create a second "Tienda Demo"; it issues a fresh admin API
  key for the existing one (keys are shown once, so a new key is the only one that can be
  printed). ``reset=True`` deletes the old demo tenant's rows first.
* Lived-in timestamps: the services stamp rows with ``hilos.core.clock.now()``, so while the
  histories are written the process's clock is moved through the last 30 days (then put back
  to the real one); that is what makes first-response times, "resolved 3 days ago" and SLA
  figures look real. Only ``hilos demo`` and tests call this, never a serving process.
* All or nothing: the whole demo is one transaction, so a failure leaves no half-built tenant.

The console password :data:`DEMO_PASSWORD` is for the demo only; never use it for real users.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.channels import service as channels
from hilos.conversations import service as conversations
from hilos.core import clock
from hilos.core.db import make_engine, make_sessionmaker
from hilos.core.models import Tenant
from hilos.core.service import create_api_key, create_tenant, create_user, find_tenant_by_name
from hilos.core.settings import Settings
from hilos.core.tenancy import TenantContext
from hilos.customers import service as customers
from hilos.demo_commerce import DemoProduct, build_shop, place_orders
from hilos.demo_engagement import build_engagement
from hilos.models import metadata
from hilos.routing import service as routing
from hilos.routing import sla

DEMO_TENANT_NAME = "Tienda Demo"
DEMO_LOGIN_EMAIL = "admin@tienda-demo.es"
# For the demo only: printed on the terminal, so it protects nothing.
DEMO_PASSWORD = "hilos-demo"
CUSTOMER_COUNT = 200
HISTORY_DAYS = 30
SEED = 42


@dataclass(frozen=True)
class DemoInfo:
    tenant_id: str
    api_key: str
    login_email: str
    login_password: str


# --- the shop -------------------------------------------------------------------------------

# (key, kind, name, config). Configs hold no provider credentials: replies stay in Hilos.
CHANNELS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("web_chat", "web_chat", "Chat de tienda-demo.es", {"greeting": "¡Hola! ¿En qué te ayudamos?"}),
    ("email", "email", "Atención al cliente", {"address": "hola@tienda-demo.es"}),
    ("whatsapp", "whatsapp", "WhatsApp Tienda Demo", {"display_phone_number": "+34 910 123 456"}),
    ("messenger", "messenger", "Facebook Messenger", {"page_name": "Tienda Demo"}),
    ("instagram", "instagram", "Instagram @tiendademo", {"username": "tiendademo"}),
    ("telegram", "telegram", "Telegram @TiendaDemoBot", {"bot_username": "TiendaDemoBot"}),
    ("sms", "sms", "SMS Tienda Demo", {"sender_id": "TiendaDemo"}),
    ("phone", "phone", "Teléfono 910 123 456", {"number": "+34 910 123 456"}),
    (
        "store_madrid",
        "store",
        "Tienda Madrid Centro",
        {"address": "Calle de Preciados 12, 28013 Madrid", "opening_hours": "L-S 10:00-21:00"},
    ),
    (
        "store_sevilla",
        "store",
        "Tienda Sevilla",
        {"address": "Calle Tetuán 8, 41001 Sevilla", "opening_hours": "L-S 10:00-21:00"},
    ),
    ("api", "api", "Formularios de la web (API)", {"source": "tienda-demo.es/contacto"}),
)
STORES = ("store_madrid", "store_sevilla")

# (email, name, role)
STAFF: tuple[tuple[str, str, str], ...] = (
    (DEMO_LOGIN_EMAIL, "Administración Tienda Demo", "admin"),
    ("alberto.sanz@tienda-demo.es", "Alberto Sanz", "supervisor"),
    ("lucia.martin@tienda-demo.es", "Lucía Martín", "agent"),
    ("javier.ortega@tienda-demo.es", "Javier Ortega", "agent"),
    ("carmen.ruiz@tienda-demo.es", "Carmen Ruiz", "agent"),
)


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    article: str  # "la chaqueta", "las zapatillas": Spanish needs it to name the product
    english: str
    price: int  # cents of EUR
    sizes: tuple[str, ...]

    @property
    def the(self) -> str:
        return f"{self.article} {self.name}"

    @property
    def euros(self) -> float:
        return self.price / 100

    @property
    def title(self) -> str:
        return self.name[0].upper() + self.name[1:]

    @property
    def path(self) -> str:
        return "/p/" + _slug(self.name, sep="-")


CLOTHING_SIZES = ("XS", "S", "M", "L", "XL")
SHOE_SIZES = tuple(str(n) for n in range(36, 46))
PRODUCTS = (
    Product("CHQ-VAQ-01", "chaqueta vaquera", "la", "denim jacket", 5995, CLOTHING_SIZES),
    Product(
        "ZAP-RUN-02", "zapatillas Runner blancas", "las", "white Runner trainers", 7995, SHOE_SIZES
    ),
    Product("VES-LIN-03", "vestido midi de lino", "el", "linen midi dress", 4995, CLOTHING_SIZES),
    Product("CAM-OXF-04", "camisa Oxford azul", "la", "blue Oxford shirt", 3995, CLOTHING_SIZES),
    Product(
        "BOT-CHE-05", "botas Chelsea de piel", "las", "leather Chelsea boots", 11995, SHOE_SIZES
    ),
    Product("SUD-CAP-06", "sudadera con capucha gris", "la", "grey hoodie", 3495, CLOTHING_SIZES),
    Product("PAN-CHI-07", "pantalón chino beige", "el", "beige chinos", 3995, CLOTHING_SIZES),
    Product("ABR-PAN-08", "abrigo de paño camel", "el", "camel wool coat", 12995, CLOTHING_SIZES),
    Product(
        "JER-TRE-09", "jersey de punto trenzado", "el", "cable-knit jumper", 4595, CLOTHING_SIZES
    ),
    Product("ALP-ESP-10", "alpargatas de esparto", "las", "espadrilles", 2995, SHOE_SIZES),
)

# --- the people -----------------------------------------------------------------------------

FIRST_NAMES = (
    "María José", "María", "Lucía", "Carmen", "Begoña", "Ainhoa", "Nuria", "Paula", "Marta",
    "Elena", "Irene", "Raquel", "Inés", "Rocío", "Alba", "Sofía", "Pilar", "Montserrat",
    "Cristina", "Lourdes", "Ángela", "Maite", "Noelia", "Leire", "Aitana", "Mercedes",
    "Íñigo", "Javier", "Alejandro", "José Luis", "Manuel", "Pablo", "Sergio", "Álvaro", "Jorge",
    "Rubén", "Andrés", "Jesús", "Óscar", "Iker", "Raúl", "Adrián", "Francisco Javier",
    "Gonzalo", "Víctor", "Daniel", "Borja", "Ramón", "Joaquín", "Unai",
)  # fmt: skip
SURNAMES = (
    "García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez",
    "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez",
    "Romero", "Alonso", "Gutiérrez", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos",
    "Gil", "Ramírez", "Serrano", "Blanco", "Molina", "Morales", "Suárez", "Ortega", "Delgado",
    "Castro", "Ortiz", "Rubio", "Marín", "Sanz", "Núñez", "Iglesias", "Medina", "Garrido",
    "Cortés", "Castillo", "Santos", "Lozano", "Cano", "Prieto", "Méndez", "Calvo", "Gallego",
    "Vidal", "León", "Márquez", "Herrera", "Peña", "Cabrera", "Vega", "Fuentes", "Carrasco",
    "Díez", "Caballero", "Nieto", "Pascual", "Herrero", "Montero", "Hidalgo", "Ibáñez",
    "Ferrer", "Durán", "Benítez", "Crespo", "Pastor", "Sáez", "Velasco", "Soler", "Bravo",
    "Echeverría", "Urrutia", "Etxeberria", "Goikoetxea", "Zubizarreta",
)  # fmt: skip
SPANISH_CITIES = (
    "Madrid", "Madrid", "Madrid", "Sevilla", "Sevilla", "Barcelona", "Valencia", "Bilbao",
    "Málaga", "Zaragoza", "Granada", "Valladolid", "Córdoba", "Alicante", "San Sebastián",
)  # fmt: skip
MEXICAN_FIRST_NAMES = (
    "Guadalupe", "José Manuel", "Ximena", "Fernanda", "Luis Ángel", "Juan Carlos", "Daniela",
    "Alejandra", "Emiliano", "Valeria",
)  # fmt: skip
MEXICAN_SURNAMES = (
    "Hernández", "Martínez", "López", "Ramírez", "Flores", "Cruz", "Reyes", "Castañeda",
    "Villarreal", "Garza", "Treviño", "Zapata", "Quintero", "Salinas",
)  # fmt: skip
# (city, area code) for Mexican mobiles: +52, then 10 digits starting with the area code.
MEXICAN_CITIES = (
    ("Ciudad de México", "55"),
    ("Guadalajara", "33"),
    ("Monterrey", "81"),
    ("Puebla", "222"),
    ("Querétaro", "442"),
)
ENGLISH_FIRST_NAMES = ("Olivia", "James", "Sophie", "Liam", "Hannah", "Oliver", "Charlotte")
ENGLISH_SURNAMES = ("Clarke", "Whitfield", "Bennett", "Hughes", "Fletcher", "Walsh", "Murray")


def _slug(text: str, *, sep: str = "") -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = ["".join(c for c in word if c.isalnum()) for word in plain.split()]
    return sep.join(word for word in words if word)


@dataclass
class Person:
    """Who a demo customer is before Hilos knows anything about them."""

    first_name: str
    name: str
    language: str
    country: str
    city: str
    email: str
    mobile: str  # E.164
    loyalty: str
    instagram: str
    messenger: str
    telegram: str
    anonymous: str

    def identity(self, kind: str) -> str:
        values = {
            "email": self.email,
            "phone": self.mobile,
            "whatsapp": self.mobile.lstrip("+"),
            "loyalty": self.loyalty,
            "instagram": self.instagram,
            "messenger": self.messenger,
            "telegram": self.telegram,
            "anonymous": self.anonymous,
        }
        return values[kind]

    @property
    def traits(self) -> dict[str, Any]:
        return {"city": self.city, "country": self.country}


# The identity kind a customer writes from on each channel.
SENDER_KIND = {
    "web_chat": "anonymous",
    "email": "email",
    "whatsapp": "whatsapp",
    "messenger": "messenger",
    "instagram": "instagram",
    "telegram": "telegram",
    "sms": "phone",
    "phone": "phone",
    "store_madrid": "loyalty",
    "store_sevilla": "loyalty",
    "api": "email",
}


class People:
    """Makes unique, plausible people from one seeded random generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.emails: set[str] = set()
        self.mobiles: set[str] = set()
        self.count = 0

    def make(self) -> Person:
        rng = self.rng
        self.count += 1
        roll = rng.random()
        if roll < 0.06:
            first = rng.choice(MEXICAN_FIRST_NAMES)
            surnames = rng.sample(MEXICAN_SURNAMES, 2)
            city, area = rng.choice(MEXICAN_CITIES)
            mobile = self._mobile("+52" + area, 10 - len(area))
            country, language, domain = "MX", "es", "example.mx"
        elif roll < 0.11:
            first = rng.choice(ENGLISH_FIRST_NAMES)
            surnames = [rng.choice(ENGLISH_SURNAMES)]
            city, mobile = rng.choice(("Málaga", "Madrid", "Alicante")), self._mobile("+346", 8)
            country, language, domain = "ES", "en", "example.com"
        else:
            first = rng.choice(FIRST_NAMES)
            surnames = rng.sample(SURNAMES, 2)
            city, mobile = rng.choice(SPANISH_CITIES), self._mobile("+346", 8)
            country, language = "ES", "es"
            domain = rng.choice(("example.es", "example.es", "example.es", "example.com"))
        return Person(
            first_name=first,
            name=" ".join([first, *surnames]),
            language=language,
            country=country,
            city=city,
            email=self._email(first, surnames, domain),
            mobile=mobile,
            loyalty=f"TD{self.count:04d}{rng.randint(1000, 9999)}",
            instagram=str(rng.randint(10**16, 10**17 - 1)),
            messenger=str(rng.randint(10**15, 10**16 - 1)),
            telegram=str(rng.randint(10**8, 7 * 10**9)),
            anonymous=f"anon-{rng.getrandbits(64):016x}",
        )

    def _mobile(self, prefix: str, digits: int) -> str:
        while True:
            number = prefix + "".join(str(self.rng.randint(0, 9)) for _ in range(digits))
            if number not in self.mobiles:
                self.mobiles.add(number)
                return number

    def _email(self, first: str, surnames: list[str], domain: str) -> str:
        given = _slug(first.split()[0])
        family = [_slug(surname) for surname in surnames]
        patterns = [
            f"{given}.{family[0]}",
            f"{given}.{family[0]}",
            f"{given}{family[0]}",
            f"{given[0]}{family[0]}",
            f"{given}.{family[0]}.{family[-1]}",
            f"{given}.{family[0]}{self.rng.randint(70, 99)}",
        ]
        local = self.rng.choice(patterns)
        candidate, suffix = local, 1
        while f"{candidate}@{domain}" in self.emails:
            suffix += 1
            candidate = f"{local}{suffix}"
        self.emails.add(f"{candidate}@{domain}")
        return f"{candidate}@{domain}"


# --- the clock ------------------------------------------------------------------------------


class SimulatedClock:
    """The demo's "now": services stamp rows with it, never later than the real moment."""

    def __init__(self, limit: datetime) -> None:
        self.limit = limit
        self.moment = limit

    def __call__(self) -> datetime:
        return self.moment

    def start_at(self, moment: datetime) -> None:
        self.moment = min(moment, self.limit)

    def advance(self, delta: timedelta) -> None:
        self.moment = min(self.moment + delta, self.limit)


@contextmanager
def simulated(sim: SimulatedClock) -> Iterator[None]:
    clock.set_now(sim)
    try:
        yield
    finally:
        clock.set_now(None)


# --- writing one customer's history ---------------------------------------------------------


@dataclass
class Shop:
    """What every story needs: the session, the tenant, its channels and staff."""

    session: AsyncSession
    tenant: TenantContext
    rng: random.Random
    clock: SimulatedClock
    channel_ids: dict[str, str]
    channel_names: dict[str, str]
    message_count: int = 0
    reply_count: int = 0

    def external_id(self, channel: str) -> str:
        self.message_count += 1
        n = self.message_count
        if channel == "email":
            return f"<demo.{n:06d}@mail.example.es>"
        if channel == "whatsapp":
            return f"wamid.DEMO{n:08d}"
        return f"demo-{channel}-{n:06d}"


@dataclass
class Story:
    """One customer's history as it is written, step by step, through the services."""

    shop: Shop
    person: Person
    recent: bool
    agent_id: str
    agent_name: str
    customer_id: str | None = None
    conversation_id: str | None = None
    assigned: bool = False
    order: str = ""
    product: Product = field(default_factory=lambda: PRODUCTS[0])
    size: str = "M"

    @property
    def rng(self) -> random.Random:
        return self.shop.rng

    @property
    def first(self) -> str:
        return self.person.first_name

    @property
    def now(self) -> datetime:
        return self.shop.clock.moment

    def wait(self, *, minutes: float = 0, hours: float = 0, days: float = 0) -> None:
        delta = timedelta(minutes=minutes, hours=hours, days=days)
        self.shop.clock.advance(delta * self.rng.uniform(0.75, 1.25))

    def store(self) -> tuple[str, str]:
        """A physical store: its channel key and its name."""
        key = self.rng.choice(STORES)
        return key, self.shop.channel_names[key]

    def store_properties(self, store: str) -> dict[str, str]:
        by_name = {self.shop.channel_names[key]: key for key in STORES}
        return {"store": store, "store_channel_id": self.shop.channel_ids[by_name[store]]}

    async def identify(self, *kinds: str, reason: str = "identify") -> None:
        result = await customers.identify(
            self.shop.session,
            self.shop.tenant,
            identities=[(kind, self.person.identity(kind)) for kind in kinds],
            name=self.person.name,
            language=self.person.language,
            traits=self.person.traits,
            reason=reason,
        )
        self.customer_id = result.customer_id

    async def inbound(
        self, channel: str, text: str, *, attachments: list[dict[str, Any]] | None = None
    ) -> None:
        kind = SENDER_KIND[channel]
        received = await conversations.receive(
            self.shop.session,
            self.shop.tenant,
            channel_id=self.shop.channel_ids[channel],
            external_id=self.shop.external_id(channel),
            sender_kind=kind,
            sender_value=self.person.identity(kind),
            sender_name=self.person.name,
            text=text,
            attachments=attachments or [],
            sent_at=self.now,
        )
        self.customer_id, self.conversation_id = received.customer_id, received.conversation_id

    async def assign(self) -> None:
        assert self.conversation_id is not None
        await conversations.update_conversation(
            self.shop.session,
            self.shop.tenant,
            conversation_id=self.conversation_id,
            changes={"assignee_id": self.agent_id},
        )
        self.assigned = True

    async def reply(
        self,
        text: str,
        *,
        channel: str | None = None,
        note: bool = False,
        attachments: list[dict[str, Any]] | None = None,
    ) -> None:
        assert self.conversation_id is not None
        if not self.assigned:
            await self.assign()
        message = await conversations.reply(
            self.shop.session,
            self.shop.tenant,
            conversation_id=self.conversation_id,
            text=text,
            attachments=attachments or [],
            private=note,
            channel_id=self.shop.channel_ids[channel] if channel else None,
            author_user_id=self.agent_id,
            # History being written, not a live reply: no 24-hour window check.
            sent_at=self.shop.clock.moment,
        )
        self.shop.reply_count += 1
        if not note:
            # History, not a live send: the provider's receipt came long ago.
            message.status = self.rng.choice(("delivered", "read", "read"))

    async def set_status(self, status: str, *, snoozed_until: datetime | None = None) -> None:
        assert self.conversation_id is not None
        changes: dict[str, Any] = {"status": status}
        if snoozed_until is not None:
            changes["snoozed_until"] = snoozed_until
        await conversations.update_conversation(
            self.shop.session,
            self.shop.tenant,
            conversation_id=self.conversation_id,
            changes=changes,
        )

    async def event(
        self,
        name: str,
        properties: dict[str, Any],
        *,
        type: str = "track",
        context: dict[str, Any] | None = None,
    ) -> None:
        assert self.customer_id is not None
        await customers.add_timeline_event(
            self.shop.session,
            self.shop.tenant,
            customer_id=self.customer_id,
            type=type,
            name=name,
            properties=properties,
            context=context or {},
            occurred_at=self.now,
            source_message_id=None,
        )

    async def consent(self, purpose: str, channel_kind: str, *, granted: bool, source: str) -> None:
        assert self.customer_id is not None
        await customers.record_consent(
            self.shop.session,
            self.shop.tenant,
            customer_id=self.customer_id,
            purpose=purpose,
            channel_kind=channel_kind,
            granted=granted,
            source=source,
            recorded_at=self.now,
        )

    # -- pieces several stories share --

    def invoice(self) -> dict[str, Any]:
        return {
            "type": "file",
            "name": f"factura-{self.order}.pdf",
            "mime_type": "application/pdf",
            "size": self.rng.randint(40_000, 90_000),
        }

    def pick_product(self) -> None:
        self.product = self.rng.choice(PRODUCTS)
        self.size = self.rng.choice(self.product.sizes)
        self.order = f"TD-{self.rng.randint(100000, 999999)}"

    async def browse(self, *, cart: bool = False) -> None:
        """A visit to the online shop, as a Segment SDK would report it."""
        locale = "en-GB" if self.person.language == "en" else "es-ES"
        for product in self.rng.sample(PRODUCTS, self.rng.randint(1, 3)):
            url = f"https://tienda-demo.es{product.path}"
            page = {"url": url, "path": product.path, "title": product.title}
            await self.event(
                product.title,
                page,
                type="page",
                context={"page": page, "locale": locale},
            )
            await self.event(
                "Product Viewed",
                {
                    "product_id": product.sku,
                    "name": product.name,
                    "price": product.euros,
                    "currency": "EUR",
                },
                context={"page": page, "locale": locale},
            )
            self.wait(minutes=3)
        if cart:
            await self.event(
                "Cart Abandoned",
                {
                    "cart_id": f"cart-{self.rng.getrandbits(32):08x}",
                    "products": [
                        {
                            "product_id": self.product.sku,
                            "name": self.product.name,
                            "size": self.size,
                        }
                    ],
                    "value": self.product.euros,
                    "currency": "EUR",
                },
            )

    async def order_completed(self, *, channel: str, store: str | None = None) -> None:
        properties: dict[str, Any] = {
            "order_id": self.order,
            "total": self.product.euros,
            "currency": "EUR",
            "channel": channel,
            "products": [
                {
                    "product_id": self.product.sku,
                    "name": self.product.name,
                    "size": self.size,
                    "price": self.product.euros,
                    "quantity": 1,
                }
            ],
        }
        if store is not None:
            properties.update(self.store_properties(store))
        await self.event("Order Completed", properties)

    async def store_visit(self, store: str, *, purpose: str) -> None:
        await self.event(
            "Store Visit",
            {
                **self.store_properties(store),
                "loyalty_card": self.person.loyalty,
                "purpose": purpose,
            },
        )

    async def finish(self) -> None:
        """Leave a recent story waiting on the customer; resolve an old one."""
        await self.set_status("pending" if self.recent else "resolved")


StoryFn = Callable[[Story], Awaitable[None]]


async def order_status_whatsapp_then_email(s: Story) -> None:
    """Asks on WhatsApp where the order is, then writes by email: one conversation, two channels."""
    s.pick_product()
    await s.identify("email", "phone", "whatsapp")
    await s.order_completed(channel="web")
    s.wait(days=2)
    await s.inbound(
        "whatsapp",
        s.rng.choice(
            (
                f"Hola, hice el pedido {s.order} hace dos días y sigue sin llegar. ¿Sabéis algo?",
                f"Buenas! Quería saber el estado de mi pedido {s.order}, gracias",
                f"Hola, ¿me podéis decir cuándo llega el pedido {s.order}? Es un regalo 🎁",
            )
        ),
    )
    s.wait(minutes=35)
    await s.reply(
        f"Hola {s.first}, soy {s.agent_name} de Tienda Demo. Tu pedido {s.order} ya está en "
        "reparto y te llegará mañana antes de las 14:00. Te mandamos el enlace de seguimiento "
        "por email."
    )
    s.wait(days=1)
    await s.inbound(
        "email",
        f"Buenos días:\n\nOs escribo por aquí porque me resulta más cómodo. El pedido {s.order} "
        f"ha llegado, pero la talla de {s.product.the} no es la que pedí (me ha llegado una "
        f"{s.size}). Adjunto foto del albarán.\n\nUn saludo,\n{s.person.name}",
        attachments=[
            {"type": "image", "name": "albaran.jpg", "mime_type": "image/jpeg", "size": 184_320}
        ],
    )
    s.wait(hours=2)
    await s.reply(
        f"Hola {s.first}:\n\nDisculpa el error. Te enviamos hoy mismo la talla correcta sin "
        "coste y el mensajero recogerá la otra en la misma entrega.\n\n"
        f"Un saludo,\n{s.agent_name}\nTienda Demo"
    )
    if s.recent:
        await s.set_status("pending")
        return
    s.wait(days=1)
    await s.inbound("email", "Recibido todo correctamente. ¡Muchas gracias por la rapidez!")
    s.wait(minutes=20)
    await s.set_status("resolved")


async def size_question_then_pickup(s: Story) -> None:
    """Asks about sizes in the web chat, abandons a cart, then orders for pick-up in store."""
    s.pick_product()
    _, store = s.store()
    await s.identify("email", "anonymous", "phone", "whatsapp")
    await s.browse()
    await s.inbound(
        "web_chat",
        s.rng.choice(
            (
                f"Hola, con {s.product.the}, ¿pido mi talla de siempre o una más?",
                f"¿Tenéis {s.product.the} en talla {s.size}? En la web no me deja elegirla",
                f"Hola! Para {s.product.the}, ¿qué talla me recomendáis? Suelo usar la {s.size}",
            )
        ),
    )
    s.wait(minutes=4)
    await s.reply(
        f"¡Hola {s.first}! Ese modelo tiene un patrón algo ajustado: si dudas, te recomendamos "
        f"la talla {s.size}. Y si no te queda bien, el cambio es gratis."
    )
    s.wait(minutes=10)
    await s.set_status("resolved")
    s.wait(hours=3)
    await s.browse(cart=True)
    s.wait(days=2)
    await s.inbound(
        "whatsapp",
        f"Hola, os escribí por el chat de la web. Al final quiero {s.product.the} en talla "
        f"{s.size}. ¿Puedo recoger el pedido en la {store}?",
    )
    s.wait(minutes=25)
    await s.reply(
        f"¡Claro, {s.first}! Te hemos hecho la reserva en la {store} con el pedido {s.order}. "
        "Recogida en tienda gratuita; te avisamos por aquí cuando esté listo."
    )
    if s.recent:
        await s.set_status("pending")
        return
    s.wait(days=1)
    await s.reply(f"Tu pedido {s.order} ya está listo para recoger en la {store}. ¡Te esperamos!")
    s.wait(days=1)
    await s.store_visit(store, purpose="click_and_collect")
    await s.order_completed(channel="store", store=store)
    await s.set_status("resolved")


async def return_in_store_thanks_on_instagram(s: Story) -> None:
    """Asks by email how to return, returns in a store, thanks on Instagram."""
    s.pick_product()
    _, store = s.store()
    await s.identify("email", "phone", "instagram", "loyalty")
    await s.order_completed(channel="web")
    s.wait(days=3)
    await s.inbound(
        "email",
        f"Hola,\n\nQuiero devolver {s.product.the} del pedido {s.order}: la talla {s.size} "
        "me queda pequeña. ¿Puedo hacer la devolución en tienda o tengo que enviarla?\n\n"
        f"Gracias,\n{s.first}",
    )
    s.wait(hours=3)
    await s.reply(
        f"Hola {s.first}:\n\nSí, puedes hacer la devolución en cualquiera de nuestras "
        f"tiendas en 30 días, solo con el número de pedido {s.order}. El reembolso llega en "
        f"3-5 días laborables.\n\nUn saludo,\n{s.agent_name}"
    )
    s.wait(minutes=30)
    await s.set_status("resolved")
    s.wait(days=2)
    await s.store_visit(store, purpose="return")
    await s.event(
        "Order Refunded",
        {
            "order_id": s.order,
            "total": s.product.euros,
            "currency": "EUR",
            **s.store_properties(store),
        },
    )
    s.wait(hours=2)
    await s.inbound(
        "instagram",
        s.rng.choice(
            (
                f"¡Hecha la devolución en {store}! Súper rápido, gracias 😊",
                f"Ya hice la devolución en {store}, muy amables todos 👏",
            )
        ),
    )
    if s.recent:
        return
    s.wait(minutes=50)
    await s.reply(f"¡Gracias a ti, {s.first}! Nos alegra mucho leerlo 💛")
    await s.set_status("resolved")


async def store_request_whatsapp_followup(s: Story) -> None:
    """A clerk notes a wish in store; the agent follows up on WhatsApp when stock arrives."""
    s.pick_product()
    store_key, store = s.store()
    await s.identify("loyalty", "phone", "whatsapp", "email")
    await s.store_visit(store, purpose="browse")
    await s.inbound(
        store_key,
        f"Nota de tienda ({store}): busca {s.product.the} en talla {s.size} y no nos "
        "queda. Pide que le avisemos por WhatsApp cuando llegue.",
    )
    s.wait(minutes=15)
    await s.reply(
        "Reposición prevista para el jueves según almacén. Avisar por WhatsApp.", note=True
    )
    if s.recent:
        await s.set_status("snoozed", snoozed_until=s.shop.clock.limit + timedelta(days=2))
        return
    s.wait(days=2)
    await s.reply(
        f"Hola {s.first}, te escribimos de Tienda Demo: ya tenemos {s.product.the} en "
        f"talla {s.size} en la {store}. Te guardamos la reserva 48 horas.",
        channel="whatsapp",
    )
    s.wait(hours=1)
    await s.inbound("whatsapp", "¡Genial! Me paso mañana por la tarde 🙌")
    s.wait(minutes=10)
    await s.reply("¡Perfecto! Pregunta por la reserva a tu nombre.")
    await s.set_status("resolved")
    s.wait(days=1)
    await s.store_visit(store, purpose="purchase")
    await s.order_completed(channel="store", store=store)


async def phone_call_then_sms(s: Story) -> None:
    """Calls to ask about picking up; the answer goes by SMS."""
    s.pick_product()
    _, store = s.store()
    await s.identify("phone", "email")
    await s.order_completed(channel="web")
    s.wait(hours=5)
    await s.inbound(
        "phone",
        f"Llamada entrante ({s.rng.randint(2, 6)} min): pregunta si puede recoger en la "
        f"{store} el pedido {s.order} que hizo en la web.",
    )
    s.wait(minutes=5)
    await s.reply("Le confirmo por teléfono que sí; le mandamos SMS cuando esté listo.", note=True)
    if s.recent:
        return
    s.wait(hours=20)
    await s.reply(
        f"Tienda Demo: tu pedido {s.order} ya está listo para recoger en {store}. "
        "Horario L-S 10:00-21:00.",
        channel="sms",
    )
    await s.set_status("resolved")
    s.wait(days=1)
    await s.store_visit(store, purpose="click_and_collect")


# (question, answer); {first}, {product} and {size} are filled in.
SOCIAL_QUESTIONS = (
    (
        "Hola! ¿Abrís el domingo la tienda de Sevilla?",
        "¡Hola {first}! Este domingo sí abrimos, de 12:00 a 20:00 😊",
    ),
    (
        "¿Hacéis envíos a Canarias? ¿Cuánto cuesta?",
        "Hola {first}, sí: el envío a Canarias cuesta 9,95 € y tarda de 4 a 6 días laborables.",
    ),
    (
        "Buenas, ¿cuándo empiezan las rebajas? 😍",
        "¡Hola {first}! Empiezan el día 1 en la web y en todas las tiendas. ¡Te esperamos!",
    ),
    (
        "¿Tenéis tarjeta regalo?",
        "Sí, {first}: desde 20 € en tienda y en tienda-demo.es/tarjeta-regalo 🎁",
    ),
    (
        "Hola, ¿tenéis {product} en talla {size}?",
        "Hola {first}, sí: queda en talla {size} en la web y en la Tienda Madrid Centro.",
    ),
    (
        "¿Se puede cambiar un regalo sin ticket?",
        "Sí, {first}: con el ticket regalo o el número de pedido puedes cambiarlo en 30 días.",
    ),
)


async def social_question(s: Story) -> None:
    """A quick question from a social network, from someone the shop did not know yet."""
    s.pick_product()
    channel = s.rng.choice(("messenger", "instagram", "telegram"))
    question, answer = s.rng.choice(SOCIAL_QUESTIONS)
    words = {"first": s.first, "product": s.product.the, "size": s.size}
    await s.inbound(channel, question.format(**words))
    await s.identify(SENDER_KIND[channel])  # the profile's name, language and city
    if s.recent:
        return
    s.wait(minutes=40)
    await s.reply(answer.format(**words))
    s.wait(minutes=30)
    await s.set_status("resolved")


async def instagram_linked_to_email(s: Story) -> None:
    """Writes on Instagram as a stranger; the agent links the account and two profiles merge."""
    s.pick_product()
    await s.identify("email", "phone")
    await s.order_completed(channel="web")
    s.wait(days=3)
    await s.inbound("instagram", f"Hola! No me ha llegado la factura del pedido {s.order} 🙁")
    s.wait(minutes=30)
    await s.reply("¡Hola! ¿Nos dices el email con el que hiciste el pedido y lo miramos?")
    s.wait(minutes=10)
    await s.inbound("instagram", f"Sí, es {s.person.email}")
    s.wait(minutes=5)
    await s.identify("email", "instagram", reason="agent linked the Instagram account")
    active = await conversations.active_conversations_of(
        s.shop.session, s.shop.tenant, s.customer_id or ""
    )
    s.conversation_id = active[0].id
    await s.reply(
        f"Hola {s.first}:\n\nComo nos pediste por Instagram, te adjuntamos la factura del "
        f"pedido {s.order}.\n\nUn saludo,\n{s.agent_name}\nTienda Demo",
        channel="email",
        attachments=[s.invoice()],
    )
    s.wait(minutes=2)
    await s.reply("¡Listo! Te la acabamos de enviar a tu email 📩")
    await s.finish()


async def sms_opt_out(s: Story) -> None:
    """Had agreed to marketing by SMS, then answers BAJA."""
    await s.identify("phone", "email", "loyalty")
    await s.consent("marketing", "sms", granted=True, source="alta en tienda")
    s.wait(days=6)
    await s.inbound("sms", "BAJA")
    await s.consent("marketing", "sms", granted=False, source="respuesta BAJA por SMS")
    s.wait(minutes=2)
    await s.reply("Tienda Demo: te hemos dado de baja de nuestras promociones por SMS.")
    await s.set_status("resolved")


async def contact_form(s: Story) -> None:
    """Uses the contact form of the website (the API channel); the answer goes by email."""
    await s.identify("email")
    await s.inbound(
        "api",
        s.rng.choice(
            (
                "Formulario de contacto: ¿Hacéis factura a nombre de empresa? Necesito el NIF.",
                "Formulario de contacto: me gustaría trabajar con vosotros, ¿dónde envío el CV?",
                "Formulario de contacto: ¿tenéis descuento para pedidos de más de 20 unidades?",
            )
        ),
    )
    if s.recent:
        return
    s.wait(hours=4)
    await s.reply(
        f"Hola {s.first}:\n\nGracias por escribirnos. Te respondemos con todos los detalles en "
        f"este correo.\n\nUn saludo,\n{s.agent_name}",
        channel="email",
    )
    await s.finish()


async def browsing_only(s: Story) -> None:
    """Only visits the shop online (Segment page and track events) and opts in to emails."""
    s.pick_product()
    await s.identify("anonymous", "email")
    await s.browse()
    s.wait(days=1)
    await s.browse(cart=s.rng.random() < 0.6)
    await s.consent("marketing", "email", granted=True, source="alta newsletter")


async def english_visitor(s: Story) -> None:
    """An English-speaking customer living in Spain: web chat, then email."""
    s.pick_product()
    await s.identify("email", "anonymous", "phone")
    await s.browse()
    await s.inbound(
        "web_chat",
        f"Hi! How does the sizing of the {s.product.english} ({s.product.sku}) work? I'm "
        f"usually a {s.size}.",
    )
    s.wait(minutes=6)
    await s.reply(
        f"Hi {s.first}! That model fits true to size, so {s.size} should be right. Exchanges "
        "are free."
    )
    s.wait(days=2)
    await s.inbound(
        "email",
        f"Hello, I ordered it ({s.order}) but I need it before Friday. Is express delivery "
        f"possible?\n\nThanks,\n{s.first}",
    )
    s.wait(hours=1)
    await s.reply(
        f"Hi {s.first},\n\nYes: we've upgraded order {s.order} to express at no cost. It will "
        f"arrive on Thursday.\n\nBest,\n{s.agent_name}"
    )
    await s.finish()


async def mexico_shipping(s: Story) -> None:
    """A customer in Mexico asks about shipping and customs on WhatsApp, then by email."""
    s.pick_product()
    await s.identify("whatsapp", "phone", "email")
    await s.inbound(
        "whatsapp",
        f"Hola, buenas tardes. ¿Hacen envíos a {s.person.city}? ¿Cuánto tarda y cuánto cuesta?",
    )
    s.wait(minutes=50)
    await s.reply(
        f"¡Hola {s.first}! Sí, enviamos a México: tarda de 7 a 10 días hábiles y el envío "
        "cuesta 19,95 €. Los aranceles de aduana los paga el destinatario."
    )
    s.wait(days=4)
    await s.inbound(
        "email",
        f"Hola, mi pedido {s.order} está detenido en la aduana. ¿Me pueden ayudar con la "
        f"factura comercial?\n\nSaludos,\n{s.person.name}",
    )
    s.wait(hours=5)
    await s.reply(
        f"Hola {s.first}:\n\nTe adjuntamos la factura comercial del pedido {s.order} para "
        f"presentarla en la aduana.\n\nUn saludo,\n{s.agent_name}",
        attachments=[s.invoice()],
    )
    await s.finish()


# (story, weight, span in days, share of stories still active at the end)
STORIES: tuple[tuple[StoryFn, int, float, float], ...] = (
    (order_status_whatsapp_then_email, 20, 4.5, 0.25),
    (size_question_then_pickup, 16, 5.5, 0.3),
    (return_in_store_thanks_on_instagram, 12, 5.5, 0.2),
    (store_request_whatsapp_followup, 10, 4.0, 0.25),
    (phone_call_then_sms, 8, 2.0, 0.3),
    (social_question, 16, 0.1, 0.35),
    (instagram_linked_to_email, 5, 3.2, 0.3),
    (sms_opt_out, 4, 6.1, 0.0),
    (contact_form, 6, 0.2, 0.4),
    (browsing_only, 10, 1.1, 0.0),
)


def pick_story(rng: random.Random, person: Person) -> tuple[StoryFn, float, float]:
    if person.language == "en":
        return english_visitor, 2.2, 0.3
    if person.country == "MX":
        return mexico_shipping, 4.3, 0.3
    story, _, span, active = rng.choices(STORIES, weights=[w for _, w, _, _ in STORIES])[0]
    return story, span, active


async def extras(s: Story) -> None:
    """What many customers have besides their story: consents and another visit online."""
    if s.customer_id is None:
        return
    if s.rng.random() < 0.3:
        await s.consent("marketing", "email", granted=True, source="formulario web")
        if s.rng.random() < 0.5:
            await s.consent("marketing", "whatsapp", granted=False, source="preferencias web")
    if s.rng.random() < 0.15:
        await s.consent("service", "whatsapp", granted=True, source="checkout")
    if s.rng.random() < 0.25:
        s.wait(hours=6)
        await s.browse()


# --- the tenant -----------------------------------------------------------------------------


async def delete_tenant(session: AsyncSession, tenant_id: str) -> None:
    """Every row of the tenant, children first (tables ordered by their foreign keys)."""
    for table in reversed(metadata.sorted_tables):
        if table.name != Tenant.__tablename__ and "tenant_id" in table.c:
            await session.execute(delete(table).where(table.c.tenant_id == tenant_id))
    await session.execute(delete(Tenant).where(Tenant.id == tenant_id))


async def contact_center(
    session: AsyncSession, tenant: TenantContext, agent_ids: list[str]
) -> None:
    """Queues, agent profiles, business hours and an SLA policy, so the supervisor view and
    the SLA views have something to show once the worker relays the history's events."""
    messaging = ["whatsapp", "messenger", "instagram", "telegram", "sms", "web_chat", "email"]
    await routing.create_queue(
        session,
        tenant,
        fields={"name": "Atención al cliente", "skills": {"es": 1}, "channel_kinds": messaging},
    )
    await routing.create_queue(
        session,
        tenant,
        fields={"name": "Teléfono", "skills": {"es": 1}, "channel_kinds": ["phone"]},
    )
    for index, agent_id in enumerate(agent_ids):
        await routing.create_agent(
            session,
            tenant,
            email=None,
            name=None,
            user_id=agent_id,
            password=None,
            locale=None,
            skills={"es": 3, "en": 2 if index % 2 == 0 else 0},
            secondary_skills={},
            capacity={},
        )
    weekdays = [["09:00", "14:00"], ["16:00", "20:00"]]
    await sla.set_business_hours(
        session,
        tenant,
        timezone=None,
        weekly={
            **dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), weekdays),
            "sat": [["10:00", "14:00"]],
        },
        holidays=["2026-12-08", "2026-12-25", "2027-01-01", "2027-01-06"],
    )
    await sla.create_policy(
        session,
        tenant,
        name="Mensajería y email",
        channel_kinds=None,
        priority=None,
        first_response_seconds=2 * 3600,
        next_response_seconds=4 * 3600,
        resolution_seconds=3 * 86_400,
        business_hours=True,
    )


async def build(session: AsyncSession, console: Console, *, count: int) -> tuple[str, str]:
    """Create the demo tenant and ``count`` customers; return its id and admin API key."""
    tenant_row, api_key = await create_tenant(session, name=DEMO_TENANT_NAME)
    tenant = TenantContext.from_row(tenant_row)
    channel_ids: dict[str, str] = {}
    channel_names: dict[str, str] = {}
    for key, kind, name, config in CHANNELS:
        channel = await channels.create_channel(
            session, tenant, kind=kind, name=name, config=config
        )
        channel_ids[key], channel_names[key] = channel.id, name
    console.print(f"  {len(CHANNELS)} channels, one of every kind")
    agents: list[tuple[str, str]] = []
    for email, name, role in STAFF:
        user = await create_user(
            session, tenant=tenant, email=email, name=name, role=role, password=DEMO_PASSWORD
        )
        if role == "agent":
            agents.append((user.id, name.split()[0]))
    console.print(f"  {len(STAFF)} console users (1 admin, 1 supervisor, {len(agents)} agents)")
    await contact_center(session, tenant, [agent_id for agent_id, _ in agents])
    console.print("  2 queues, business hours and an SLA policy")

    rng = random.Random(SEED)
    real_now = clock.now()
    sim = SimulatedClock(real_now - timedelta(minutes=2))
    shop = Shop(session, tenant, rng, sim, channel_ids, channel_names)
    people = People(rng)
    progress = Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress, simulated(sim):
        task = progress.add_task("customers and their histories", total=count)
        for _ in range(count):
            person = people.make()
            story_fn, span, active_share = pick_story(rng, person)
            recent = rng.random() < active_share
            if recent:
                ago = timedelta(days=span) + timedelta(hours=rng.uniform(0.5, 36))
            else:
                ago = timedelta(days=rng.uniform(span + 0.5, HISTORY_DAYS))
            sim.start_at(real_now - ago)
            agent_id, agent_name = rng.choice(agents)
            story = Story(shop, person, recent, agent_id, agent_name)
            await story_fn(story)
            await extras(story)
            await session.flush()
            # Keep the unit of work small: one customer's objects are not needed by the next.
            session.expunge_all()
            progress.advance(task)
    console.print(
        f"  {shop.message_count + shop.reply_count} messages "
        f"({shop.message_count} from customers, {shop.reply_count} replies and notes)"
    )
    catalog = [DemoProduct(p.sku, p.name, p.price, p.sizes) for p in PRODUCTS]
    skus = await build_shop(session, tenant, catalog, rng)
    console.print(
        f"  {skus} SKUs priced in 8 sales channels, stock in a warehouse and 3 stores, "
        "a loyalty program"
    )
    placed, open_carts = await place_orders(session, tenant, catalog, rng)
    console.print(f"  {placed} orders in every channel and state, {open_carts} open carts")
    await build_engagement(session, tenant)
    console.print(
        "  a knowledge base and the assistant on web chat, 2 segments, the abandoned-cart "
        "journey (a draft)"
    )
    for identities, name, traits in POSSIBLE_DUPLICATES:
        await customers.identify(
            session, tenant, identities=identities, name=name, traits=traits, reason="import"
        )
    console.print(
        f"  {len(POSSIBLE_DUPLICATES)} imported profiles for the duplicates page (the worker "
        "finds them within seconds)"
    )
    return tenant.id, api_key


# Profiles as an old CRM and the shop's till would hand them over: one person written twice
# (the store's "María José Fernández" and the web's "Mª José Fernandez Ruiz", no shared email),
# and a father and son with one name, address and landline whom a person must keep apart.
POSSIBLE_DUPLICATES: list[tuple[list[tuple[str, str]], str, dict[str, Any]]] = [
    (
        [("external", "tpv-1001"), ("email", "mjfernandez@example.es")],
        "María José Fernández",
        {"postcode": "28001", "city": "Madrid", "birth_date": "1980-05-17"},
    ),
    (
        [("external", "web-77"), ("email", "mariajose.fr@example.org")],
        "Mª José Fernandez Ruiz",
        {"postcode": "28001", "city": "Madrid", "birth_date": "1980-05-17"},
    ),
    (
        [("external", "crm-3"), ("phone", "+34915550101")],
        "José Luis García Pérez",
        {
            "street": "Calle Mayor 12, 3º B",
            "postcode": "28013",
            "city": "Madrid",
            "birth_date": "1952-03-02",
        },
    ),
    (
        [("external", "crm-4")],
        "José Luis García Pérez",
        {
            "street": "Calle Mayor 12, 3º B",
            "postcode": "28013",
            "city": "Madrid",
            "birth_date": "1981-11-23",
            "phone": "+34915550101",
        },
    ),
]


async def run_demo(
    settings: Settings, *, reset: bool, console: Console, customer_count: int = CUSTOMER_COUNT
) -> DemoInfo:
    """Create (or, with ``reset``, recreate) the demo tenant; a second run issues a new key.

    ``customer_count`` is for tests that need a smaller demo; ``hilos demo`` always makes 200.
    """
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            existing = await find_tenant_by_name(session, DEMO_TENANT_NAME)
            if existing is not None and not reset:
                _, api_key = await create_api_key(
                    session, tenant=TenantContext.from_row(existing), name="demo", role="admin"
                )
                console.print(
                    f'The tenant "{DEMO_TENANT_NAME}" already exists: issued a new admin API key '
                    "(run with --reset to recreate it)."
                )
                return DemoInfo(existing.id, api_key, DEMO_LOGIN_EMAIL, DEMO_PASSWORD)
            while existing is not None:
                console.print(f'Deleting the demo tenant "{DEMO_TENANT_NAME}" ({existing.id})')
                await delete_tenant(session, existing.id)
                existing = await find_tenant_by_name(session, DEMO_TENANT_NAME)
            console.print(f'Creating the demo tenant "{DEMO_TENANT_NAME}"')
            tenant_id, api_key = await build(session, console, count=customer_count)
        return DemoInfo(tenant_id, api_key, DEMO_LOGIN_EMAIL, DEMO_PASSWORD)
    finally:
        await engine.dispose()
