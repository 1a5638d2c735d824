"""A journey's definition: its steps, checked when it is saved so that a running journey can
never loop, stall or name something that does not exist. Pure functions, no database.

A definition is ``{"start": step id, "steps": [step, ...]}``; each step has an ``id``, a
``type`` and where it goes next (``next``; a condition has ``then`` and ``else``). A missing or
``null`` destination ends the journey there, except after a wait: a wait must say where it leads.

Step types:

- ``wait``: ``{"seconds": N}``; or ``{"until": {"start": "10:00", "end": "20:00"}}`` (the next
  moment inside that daily window, in the customer's time zone); or ``{"event": "order.placed",
  "timeout_seconds": N, "on_event": step}`` (the first of the event or the timeout). A wait for
  an event without a timeout would have no exit for customers the event never comes to: refused.
- ``condition``: ``{"if": condition, "then": step, "else": step}``.
- ``send``: ``{"template_id", "channel_order": ["whatsapp", "email"]}`` through the engagement
  sending rules (consent, quiet hours, frequency cap).
- ``set_trait``: ``{"key", "value"}``; ``add_tag``: ``{"tag"}`` (the ``tags`` trait).
- ``open_conversation``: ``{"note"}``: a conversation for an agent, with the note.
- ``webhook``: ``{"endpoint_id"}``: a signed POST of ``journey.webhook`` (the run, the customer
  and what started the run) to that outbound webhook endpoint of the tenant, with its retries.

Conditions: ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": c}``, ``{"segment": id}``,
``{"trait": key, "op": "eq|neq|exists|in|gt|gte|lt|lte", "value": v}``, ``{"cart_open": true}``
(the cart that started the run is still open and not bought), ``{"ordered_since_entry": true}``.
"""

from __future__ import annotations

import re
from typing import Any

from hilos.core.errors import Invalid

STEP_TYPES = (
    "wait",
    "condition",
    "send",
    "set_trait",
    "add_tag",
    "open_conversation",
    "webhook",
)
TRAIT_OPS = ("eq", "neq", "exists", "in", "gt", "gte", "lt", "lte")
MAX_STEPS = 100
MAX_WAIT_SECONDS = 366 * 86_400
_STEP_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_HOUR = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_TOPIC = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")


def _fail(message: str, field: str, code: str = "invalid_journey") -> Invalid:
    return Invalid(message, field=field, code=code)


def destinations(step: dict[str, Any]) -> list[str]:
    """The steps a step may lead to."""
    keys = ("then", "else") if step.get("type") == "condition" else ("next", "on_event")
    return [step[key] for key in keys if isinstance(step.get(key), str)]


def check_definition(definition: Any) -> dict[str, Any]:
    """``definition`` if it is sound; otherwise ``Invalid`` naming the step and the field."""
    if not isinstance(definition, dict):
        raise _fail("a definition is an object with start and steps", "definition")
    steps = definition.get("steps")
    if not isinstance(steps, list) or not steps:
        raise _fail("a journey needs at least one step", "definition.steps")
    if len(steps) > MAX_STEPS:
        raise _fail(f"a journey has at most {MAX_STEPS} steps", "definition.steps")
    by_id: dict[str, dict[str, Any]] = {}
    for index, step in enumerate(steps):
        where = f"definition.steps.{index}"
        if not isinstance(step, dict):
            raise _fail("a step is an object", where)
        step_id = step.get("id")
        if not isinstance(step_id, str) or not _STEP_ID.match(step_id):
            raise _fail("a step id is 1-64 letters, digits, - or _", f"{where}.id")
        if step_id in by_id:
            raise _fail(f"two steps are called {step_id}", f"{where}.id")
        by_id[step_id] = step
        _check_step(step, where)
    start = definition.get("start")
    if start not in by_id:
        raise _fail(f"start names no step ({start!r})", "definition.start")
    for index, step in enumerate(steps):
        for target in destinations(step):
            if target not in by_id:
                raise _fail(
                    f"step {step['id']} leads to {target!r}, which is not a step",
                    f"definition.steps.{index}",
                )
    _check_acyclic(by_id, start)
    return definition


def _check_step(step: dict[str, Any], where: str) -> None:
    kind = step.get("type")
    if kind not in STEP_TYPES:
        raise _fail(f"type must be one of {', '.join(STEP_TYPES)}", f"{where}.type")
    for key in ("next", "then", "else", "on_event"):
        if key in step and step[key] is not None and not isinstance(step[key], str):
            raise _fail(f"{key} names a step id (or null to end)", f"{where}.{key}")
    if kind == "wait":
        _check_wait(step, where)
    elif kind == "condition":
        check_condition(step.get("if"), f"{where}.if")
    elif kind == "send":
        if not isinstance(step.get("template_id"), str):
            raise _fail("a send names its template_id", f"{where}.template_id")
        order = step.get("channel_order", [])
        if not isinstance(order, list) or not all(isinstance(k, str) for k in order):
            raise _fail("channel_order is a list of channel kinds", f"{where}.channel_order")
    elif kind == "set_trait":
        if not isinstance(step.get("key"), str) or not step["key"]:
            raise _fail("set_trait names the trait's key", f"{where}.key")
        if "value" not in step:
            raise _fail("set_trait gives a value (null removes the trait)", f"{where}.value")
    elif kind == "add_tag":
        if not isinstance(step.get("tag"), str) or not step["tag"]:
            raise _fail("add_tag names the tag", f"{where}.tag")
    elif kind == "open_conversation":
        if not isinstance(step.get("note"), str) or not step["note"].strip():
            raise _fail("open_conversation leaves the agent a note", f"{where}.note")
    elif kind == "webhook" and not isinstance(step.get("endpoint_id"), str):
        raise _fail(
            "a webhook step names the endpoint_id of an outbound webhook endpoint",
            f"{where}.endpoint_id",
        )


def _check_wait(step: dict[str, Any], where: str) -> None:
    if "next" not in step:
        raise _fail(
            "a wait must say where it leads (next)", f"{where}.next", code="wait_without_exit"
        )
    forms = [key for key in ("seconds", "until", "event") if key in step]
    if len(forms) != 1:
        raise _fail("a wait has exactly one of seconds, until or event", where)
    if "seconds" in step:
        seconds = step["seconds"]
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise _fail("seconds is a whole number", f"{where}.seconds")
        if not 0 < seconds <= MAX_WAIT_SECONDS:
            raise _fail(f"seconds is between 1 and {MAX_WAIT_SECONDS}", f"{where}.seconds")
    elif "until" in step:
        window = step["until"]
        if not isinstance(window, dict) or not all(
            isinstance(window.get(k), str) and _HOUR.match(window[k]) for k in ("start", "end")
        ):
            raise _fail('until is {"start": "HH:MM", "end": "HH:MM"}', f"{where}.until")
        if window["start"] == window["end"]:
            raise _fail("an empty window would never open", f"{where}.until")
    else:
        if not isinstance(step["event"], str) or not _TOPIC.match(step["event"]):
            raise _fail("event is an event topic such as order.placed", f"{where}.event")
        timeout = step.get("timeout_seconds")
        if timeout is None:
            raise _fail(
                "a wait for an event needs timeout_seconds: customers the event never comes "
                "to would wait forever",
                f"{where}.timeout_seconds",
                code="wait_without_exit",
            )
        if not isinstance(timeout, int) or not 0 < timeout <= MAX_WAIT_SECONDS:
            raise _fail(
                f"timeout_seconds is between 1 and {MAX_WAIT_SECONDS}", f"{where}.timeout_seconds"
            )


def check_condition(condition: Any, where: str) -> None:
    if not isinstance(condition, dict) or len(condition) == 0:
        raise _fail("a condition is an object", where)
    if "all" in condition or "any" in condition:
        key = "all" if "all" in condition else "any"
        parts = condition[key]
        if not isinstance(parts, list) or not parts:
            raise _fail(f"{key} is a non-empty list of conditions", f"{where}.{key}")
        for n, part in enumerate(parts):
            check_condition(part, f"{where}.{key}.{n}")
    elif "not" in condition:
        check_condition(condition["not"], f"{where}.not")
    elif "segment" in condition:
        if not isinstance(condition["segment"], str):
            raise _fail("segment is a segment id", f"{where}.segment")
    elif "trait" in condition:
        if not isinstance(condition["trait"], str) or not condition["trait"]:
            raise _fail("trait names a trait", f"{where}.trait")
        op = condition.get("op", "eq")
        if op not in TRAIT_OPS:
            raise _fail(f"op is one of {', '.join(TRAIT_OPS)}", f"{where}.op")
        if op == "in" and not isinstance(condition.get("value"), list):
            raise _fail("in takes a list", f"{where}.value")
    elif "cart_open" in condition or "ordered_since_entry" in condition:
        key = "cart_open" if "cart_open" in condition else "ordered_since_entry"
        if not isinstance(condition[key], bool):
            raise _fail(f"{key} is true or false", f"{where}.{key}")
    else:
        raise _fail(
            f"unknown condition {sorted(condition)[0]!r}: use all, any, not, segment, trait, "
            "cart_open or ordered_since_entry",
            where,
        )


def _check_acyclic(by_id: dict[str, dict[str, Any]], start: str) -> None:
    """Refuse a loop anywhere in the steps (not only those reachable from the start)."""
    state: dict[str, int] = {}

    def visit(step_id: str, path: list[str]) -> None:
        state[step_id] = 1
        for target in destinations(by_id[step_id]):
            if state.get(target) == 1:
                loop = " → ".join([*path[path.index(target) :], target])
                raise _fail(f"the steps loop: {loop}", "definition.steps", code="journey_cycle")
            if target not in state:
                visit(target, [*path, target])
        state[step_id] = 2

    for step_id in [start, *by_id]:
        if step_id not in state:
            visit(step_id, [step_id])
