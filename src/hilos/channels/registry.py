"""Which adapter serves which webhook path and which channel's replies.

Adapters register themselves when their module is imported; ``load_adapters`` imports them all
(the app and the worker call it once). A channel is sent through the adapter registered for
its kind and provider (``kinds.provider_of``).
"""

from __future__ import annotations

import importlib

from hilos.channels.base import Adapter, ChannelInfo
from hilos.channels.kinds import provider_of

# One module per provider, in hilos.channels.
ADAPTER_MODULES: tuple[str, ...] = (
    "whatsapp",
    "meta",
    "telegram",
    "twilio",
    "voice",
    "email",
    "webchat",
)

_BY_PATH: dict[str, Adapter] = {}
_BY_ROUTE: dict[tuple[str, str | None], Adapter] = {}


def register(adapter: Adapter, *, sends: tuple[tuple[str, str | None], ...] = ()) -> Adapter:
    """Serve ``/webhooks/{adapter.provider}/…`` and send for each ``(kind, provider)``."""
    _BY_PATH[adapter.provider] = adapter
    for route in sends:
        _BY_ROUTE[route] = adapter
    return adapter


def load_adapters() -> None:
    for name in ADAPTER_MODULES:
        importlib.import_module(f"hilos.channels.{name}")


# Other names a provider's webhook path may be configured with (the channel kind aliases).
PATH_ALIASES = {
    "twilio_sms": "twilio",
    "twilio_whatsapp": "twilio",
    "twilio_voice": "twilio",
    "facebook": "messenger",
}


def adapter_for_path(provider: str) -> Adapter | None:
    return _BY_PATH.get(PATH_ALIASES.get(provider, provider))


def serves(adapter: Adapter, channel: ChannelInfo) -> bool:
    """Whether the webhook path of ``adapter`` belongs to ``channel``."""
    if channel.kind not in adapter.kinds:
        return False
    provider = provider_of(channel.kind, dict(channel.config))
    providers = getattr(adapter, "providers", None)
    return providers is None or provider in providers


def sender_for(channel: ChannelInfo) -> Adapter | None:
    """The adapter that delivers replies on ``channel``; ``None`` for channels without one
    (a store, an ``api`` channel whose integrator fetches replies itself)."""
    provider = provider_of(channel.kind, dict(channel.config))
    return _BY_ROUTE.get((channel.kind, provider)) or _BY_ROUTE.get((channel.kind, None))
