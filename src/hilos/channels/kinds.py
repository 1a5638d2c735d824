"""Channel kinds, and which customer identities each kind can deliver a reply to."""

from __future__ import annotations

from typing import Literal

ChannelKind = Literal[
    "web_chat",
    "email",
    "whatsapp",
    "messenger",
    "instagram",
    "telegram",
    "sms",
    "phone",
    "store",
    "api",
]
CHANNEL_KINDS: tuple[str, ...] = (
    "web_chat",
    "email",
    "whatsapp",
    "messenger",
    "instagram",
    "telegram",
    "sms",
    "phone",
    "store",
    "api",
)

# In order of preference. A store is a place, not an address: a reply cannot be sent "on" it.
REPLY_IDENTITY_KINDS: dict[str, tuple[str, ...]] = {
    "web_chat": ("anonymous", "external", "email"),
    "email": ("email",),
    "whatsapp": ("whatsapp", "phone"),
    "messenger": ("messenger",),
    "instagram": ("instagram",),
    "telegram": ("telegram",),
    "sms": ("phone", "whatsapp"),
    "phone": ("phone", "whatsapp"),
    "store": (),
    "api": ("external", "email", "phone", "anonymous"),
}

SECRET_MARKERS = ("secret", "token", "password", "key")


def redact_config(config: dict[str, object]) -> dict[str, object]:
    """The config with secrets hidden, for responses: a secret is written, never read back."""
    return {
        key: ("***" if any(marker in key.lower() for marker in SECRET_MARKERS) else value)
        for key, value in config.items()
    }
