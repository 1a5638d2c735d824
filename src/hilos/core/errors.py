"""Errors that reach the client as ``{"error": {"code": ..., "message": ...}}``.

``HilosError`` is the one base: services raise its subclasses, the app turns each into its HTTP
status. Bad input is always a 4xx with a code a program can test and a message a person can read.
"""

from __future__ import annotations

from typing import Any


class HilosError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class NotFound(HilosError):
    status_code = 404
    code = "not_found"


class Unauthorized(HilosError):
    status_code = 401
    code = "unauthorized"


class Forbidden(HilosError):
    status_code = 403
    code = "forbidden"


class Conflict(HilosError):
    status_code = 409
    code = "conflict"


class Invalid(HilosError):
    """Input that is well-formed but not acceptable (an invalid phone, an unknown channel)."""

    status_code = 422
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code, details={"field": field} if field else None)
        self.field = field
