"""Secrets: argon2 password hashes (pwdlib) and API keys.

API keys are 256-bit random tokens, so a single SHA-256 is the right hash for them: it cannot be
brute-forced, and it lets every request find its key with one indexed lookup (argon2 would cost
tens of milliseconds per request by design).
"""

from __future__ import annotations

import hashlib
import secrets

from pwdlib import PasswordHash

_passwords = PasswordHash.recommended()

API_KEY_PREFIX = "hk_"


def hash_password(password: str) -> str:
    return _passwords.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    return _passwords.verify(password, password_hash)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
