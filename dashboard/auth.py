"""Sign-in for the dashboard: one configured credential, a signed session cookie.

The cookie holds the user name and an expiry, signed with HMAC-SHA256 under a key only the
server knows; nothing is stored server-side. A wrong password is answered after the same work as
a right one (``hmac.compare_digest`` on both fields).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

__all__ = ["Credential", "SessionSigner"]


@dataclass(frozen=True)
class Credential:
    user: str
    password: str

    def matches(self, user: str, password: str) -> bool:
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_password


class SessionSigner:
    """Makes and checks session cookies valid for ``ttl_s`` seconds."""

    def __init__(self, key: bytes, ttl_s: float = 12 * 3600) -> None:
        if len(key) < 16:
            raise ValueError("the session key must be at least 16 bytes")
        self.key = key
        self.ttl_s = ttl_s

    def _mac(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()

    def make(self, user: str, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self.ttl_s)
        payload = base64.urlsafe_b64encode(f"{user}|{expires}".encode()).decode()
        return f"{payload}.{self._mac(payload)}"

    def check(self, cookie: str | None, now: float | None = None) -> str | None:
        """The signed-in user, or None (no cookie, forged, or expired)."""
        if not cookie or "." not in cookie:
            return None
        payload, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            user, expires = base64.urlsafe_b64decode(payload.encode()).decode().rsplit("|", 1)
            if int(expires) < (now if now is not None else time.time()):
                return None
        except ValueError:
            return None
        return user
