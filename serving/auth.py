"""Optional API-key authentication of the inference endpoints. No Ray here.

`MLOPS_API_KEY` turns it on: one key, or several separated by commas while a key is
rotated. Clients send `Authorization: Bearer <key>` or `X-API-Key: <key>`. Keys are
compared as SHA-256 digests with `hmac.compare_digest`, against every configured key, so
the time taken says nothing about how much of a key matched or which key did. Unset or
empty: authentication is off and a check costs one attribute test.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from services.settings import API_KEY_ENV
from serving.api import RequestError

BEARER = "bearer"
API_KEY_HEADER = "x-api-key"
AUTHORIZATION_HEADER = "authorization"
MAX_KEY_BYTES = 4_096  # longer header values are refused without hashing them


class Unauthorized(RequestError):
    """401 with the challenge header RFC 9110 asks for."""

    def __init__(self, message: str) -> None:
        super().__init__(401, message)
        self.headers = {"WWW-Authenticate": 'Bearer realm="mlops"'}


def _digest(value: str) -> bytes:
    # surrogatepass: any str (even undecodable header bytes) hashes instead of raising
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class ApiKeyAuth:
    """Checks request headers against the configured keys (none: everything passes)."""

    def __init__(self, keys: str | list[str] | None) -> None:
        if isinstance(keys, str):
            keys = keys.split(",")
        cleaned = [k.strip() for k in keys or [] if k.strip()]
        self._digests = tuple(_digest(k) for k in cleaned)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiKeyAuth:
        """Keys from `MLOPS_API_KEY` (deployments forward it to replicas in runtime_env)."""
        return cls((os.environ if environ is None else environ).get(API_KEY_ENV))

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, headers: Mapping[str, str]) -> None:
        """Raise `Unauthorized` unless a presented key matches (no-op when auth is off).

        `headers` is case-insensitive (Starlette's `Headers`) or has lower-case names.
        """
        if not self._digests:
            return
        presented = presented_keys(headers)
        if not presented:
            raise Unauthorized(
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        if not self.matches(presented):
            raise Unauthorized("invalid API key")

    def matches(self, presented: list[str]) -> bool:
        """Whether any presented key equals any configured key (every pair is compared)."""
        found = False
        for candidate in presented:
            if len(candidate) > MAX_KEY_BYTES:
                continue
            digest = _digest(candidate)
            for expected in self._digests:
                found |= hmac.compare_digest(digest, expected)
        return found


def presented_keys(headers: Mapping[str, str]) -> list[str]:
    """Keys a request carries: the Bearer credential and the X-API-Key value, if present."""
    keys = []
    authorization = headers.get(AUTHORIZATION_HEADER)
    if authorization:
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() == BEARER and credential.strip():
            keys.append(credential.strip())
    api_key = headers.get(API_KEY_HEADER)
    if api_key and api_key.strip():
        keys.append(api_key.strip())
    return keys
