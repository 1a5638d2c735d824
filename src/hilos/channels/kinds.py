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

# In order of preference. A store is a place, not an address, and a phone line carries calls,
# not written replies: neither can be chosen for a reply (an agent returns a call by calling).
REPLY_IDENTITY_KINDS: dict[str, tuple[str, ...]] = {
    "web_chat": ("anonymous", "external", "email"),
    "email": ("email",),
    "whatsapp": ("whatsapp", "phone"),
    "messenger": ("messenger",),
    "instagram": ("instagram",),
    "telegram": ("telegram",),
    "sms": ("phone", "whatsapp"),
    "phone": (),
    "store": (),
    "api": ("external", "email", "phone", "anonymous"),
}

# The names the provider documentation uses for a channel, accepted when a channel is created:
# the stored kind is the medium, and ``provider`` in the config says who carries it.
KIND_ALIASES: dict[str, tuple[str, str | None]] = {
    "twilio_sms": ("sms", "twilio"),
    "twilio_whatsapp": ("whatsapp", "twilio"),
    "voice": ("phone", None),
    "webchat": ("web_chat", None),
}

# Settings a channel cannot work without, per kind and provider. Checked when it is created or
# changed, so a typo is a 422 then, not a failed delivery at 3 a.m.
REQUIRED_CONFIG: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("whatsapp", "meta"): ("phone_number_id", "access_token", "app_secret", "verify_token"),
    ("whatsapp", "twilio"): ("account_sid", "auth_token", "from_number"),
    ("messenger", "meta"): ("page_id", "page_access_token", "app_secret", "verify_token"),
    ("instagram", "meta"): ("page_id", "page_access_token", "app_secret", "verify_token"),
    ("telegram", "telegram"): ("bot_token", "secret_token"),
    ("sms", "twilio"): ("account_sid", "auth_token", "from_number"),
    ("email", None): ("address",),
    ("phone", "twilio"): ("auth_token",),
    ("phone", "generic"): ("auth_token",),
}
DEFAULT_PROVIDER: dict[str, str] = {
    "whatsapp": "meta",
    "messenger": "meta",
    "instagram": "meta",
    "telegram": "telegram",
    "sms": "twilio",
    "phone": "generic",
}


def provider_of(kind: str, config: dict[str, object]) -> str | None:
    """Who carries a channel of ``kind``: its ``provider`` setting, or the kind's default."""
    provider = config.get("provider")
    return provider if isinstance(provider, str) else DEFAULT_PROVIDER.get(kind)


def missing_config(kind: str, config: dict[str, object]) -> list[str]:
    provider = provider_of(kind, config)
    required = REQUIRED_CONFIG.get((kind, provider), REQUIRED_CONFIG.get((kind, None), ()))
    return [key for key in required if not isinstance(config.get(key), str) or not config[key]]


SECRET_MARKERS = ("secret", "token", "password", "key")


def redact_config(config: dict[str, object]) -> dict[str, object]:
    """The config with secrets hidden, for responses: a secret is written, never read back."""
    return {
        key: ("***" if any(marker in key.lower() for marker in SECRET_MARKERS) else value)
        for key, value in config.items()
    }
