"""The chat widget's assets and words: the script a business embeds, in Spanish and English.

The widget (``static/widget.js`` with ``static/widget.css``) is our own plain JavaScript: no
framework, no third-party code, nothing fetched from elsewhere, so it works offline and a
site's security review reads one file. It has no text of its own: it asks
``/webchat/{channel_id}/config`` for ``widget_text``, translated from the same Babel catalogs
as the console (``web.i18n``), so a translator edits one catalog.

The stylesheet is put inside the script when it is served, so embedding the chat costs one
request and the styles, applied inside a shadow root, neither leak into the site nor take
anything from it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from hilos.web.i18n import N_, translations

STATIC_DIR = Path(__file__).resolve().parent / "static"
_CSS_SLOT = '/*HILOS_WIDGET_CSS*/ ""'

WIDGET_TEXT: Mapping[str, str] = {
    "launcher": N_("Chat with us"),
    "close": N_("Close the chat"),
    "greeting": N_("Hi! How can we help you?"),
    "prechat": N_("Tell us how to reach you if the chat gets cut off. Every field is optional."),
    "name": N_("Name"),
    "email": N_("Email"),
    "phone": N_("Phone"),
    "start": N_("Start the chat"),
    "placeholder": N_("Write a message…"),
    "send": N_("Send"),
    "sending": N_("Sending…"),
    "failed": N_("Not sent. Tap to try again."),
    "connecting": N_("Connecting…"),
    "offline": N_("No connection. Your messages will be sent when it comes back."),
    "invalid": N_("Please check this field."),
    "error": N_("Something went wrong. Please try again."),
    "you": N_("You"),
    "unread": N_("New messages"),
}


def widget_text(language: str) -> dict[str, str]:
    """Every string the widget shows, in ``language`` (``es`` or ``en``)."""
    catalog = translations(language)
    return {key: catalog.gettext(message) for key, message in WIDGET_TEXT.items()}


@functools.cache
def widget_script() -> tuple[str, str]:
    """The script as served (its stylesheet inside), and its ETag."""
    script = (STATIC_DIR / "widget.js").read_text(encoding="utf-8")
    css = (STATIC_DIR / "widget.css").read_text(encoding="utf-8")
    if _CSS_SLOT not in script:
        raise RuntimeError("widget.js lost its stylesheet slot")
    served = script.replace(_CSS_SLOT, json.dumps(css))
    etag = '"' + hashlib.sha256(served.encode()).hexdigest()[:32] + '"'
    return served, etag
