"""OAuth 2 client credentials, as OneRoster 1.2 secures its REST services.

Both sides live here: :class:`ClientCredentials` is an ``httpx.Auth`` for our clients (it
fetches a token, caches it until shortly before it expires, and fetches a new one when the
provider answers 401 once, which covers a token revoked or expired mid-sync);
:class:`TokenIssuer` is the provider side (the simulator's token endpoint, later our own).
"""

from __future__ import annotations

import base64
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

import httpx

from streams.errors import FatalError, RetriableError

__all__ = [
    "GRADEBOOK_CREATEPUT",
    "GRADEBOOK_DELETE",
    "GRADEBOOK_READONLY",
    "ROSTER_CORE_READONLY",
    "ROSTER_DEMOGRAPHICS_READONLY",
    "ROSTER_READONLY",
    "SCOPES",
    "ClientCredentials",
    "Grant",
    "TokenError",
    "TokenIssuer",
    "scope_url",
]

_SCOPE_BASE = "https://purl.imsglobal.org/spec/or/v1p2/scope/"
ROSTER_CORE_READONLY = "roster-core.readonly"
ROSTER_READONLY = "roster.readonly"
ROSTER_DEMOGRAPHICS_READONLY = "roster-demographics.readonly"
GRADEBOOK_READONLY = "gradebook.readonly"
GRADEBOOK_CREATEPUT = "gradebook.createput"
GRADEBOOK_DELETE = "gradebook.delete"
#: The 1.2 scopes (short names; the spec's full form is :func:`scope_url`).
SCOPES = (
    ROSTER_CORE_READONLY,
    ROSTER_READONLY,
    ROSTER_DEMOGRAPHICS_READONLY,
    GRADEBOOK_READONLY,
    GRADEBOOK_CREATEPUT,
    GRADEBOOK_DELETE,
)


def scope_url(scope: str) -> str:
    """The spec's full scope URI for a short scope name."""
    return scope if scope.startswith("http") else _SCOPE_BASE + scope


def _short(scope: str) -> str:
    return scope[len(_SCOPE_BASE) :] if scope.startswith(_SCOPE_BASE) else scope


class TokenError(FatalError):
    """The token endpoint refused our credentials or scopes: an operator must fix them."""


class ClientCredentials(httpx.Auth):
    """``httpx.Auth`` for the client-credentials grant, with a cached token.

    Args:
        token_url: the provider's token endpoint.
        client_id, client_secret: the credentials (sent with HTTP Basic, RFC 6749 2.3.1).
        scopes: the scopes to ask for (short or full form).
        leeway_s: a token is renewed this long before it expires.
        clock: injectable for tests.
    """

    requires_response_body = True

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scopes: Iterable[str] = (),
        *,
        leeway_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self._basic = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self.scopes = tuple(scope_url(s) for s in scopes)
        self.leeway_s = leeway_s
        self.clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        #: How many tokens were fetched (observable: a healthy sync fetches one per expiry).
        self.fetched = 0

    def _token_request(self) -> httpx.Request:
        data = {"grant_type": "client_credentials"}
        if self.scopes:
            data["scope"] = " ".join(self.scopes)
        return httpx.Request(
            "POST",
            self.token_url,
            data=data,
            headers={"Authorization": self._basic, "Accept": "application/json"},
        )

    def _store(self, response: httpx.Response) -> None:
        if response.status_code in (400, 401, 403):
            raise TokenError(
                f"token endpoint {self.token_url} refused the client credentials: HTTP "
                f"{response.status_code} {_oauth_error(response)}"
            )
        if response.status_code == 429 or response.status_code >= 500:
            raise RetriableError(f"token endpoint {self.token_url} answered HTTP {response.status_code}")
        try:
            payload = response.json()
            token = str(payload["access_token"])
            ttl = float(payload.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise RetriableError(f"token endpoint {self.token_url} sent no usable token") from None
        self._token = token
        self._expires_at = self.clock() + max(0.0, ttl - self.leeway_s)
        self.fetched += 1

    def _valid(self) -> bool:
        return self._token is not None and self.clock() < self._expires_at

    def invalidate(self) -> None:
        self._token = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:
            if not self._valid():
                self._store((yield self._token_request()))
            request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:
            # The token expired or was revoked mid-sync: one fresh token, one retry.
            with self._lock:
                self._store((yield self._token_request()))
                request.headers["Authorization"] = f"Bearer {self._token}"
            yield request


def _oauth_error(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return ""
    if isinstance(payload, Mapping):
        return f"{payload.get('error', '')} {payload.get('error_description', '')}".strip()
    return ""


@dataclass
class Grant:
    client_id: str
    scopes: frozenset[str]
    expires_at: float


@dataclass
class TokenIssuer:
    """The provider side: checks client credentials, issues and validates bearer tokens.

    Args:
        clients: client id -> (secret, the scopes that client may be granted).
        ttl_s: lifetime of a token.
    """

    clients: Mapping[str, tuple[str, frozenset[str]]]
    ttl_s: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    _grants: dict[str, Grant] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, form: Mapping[str, str], authorization: str | None) -> tuple[int, dict[str, object]]:
        """Answer a token request: (HTTP status, JSON body) per RFC 6749 section 5."""
        client_id, secret = _client_auth(form, authorization)
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "use client_credentials"}
        known = self.clients.get(client_id or "")
        if known is None or secret is None or not hmac.compare_digest(known[0], secret):
            return 401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"}
        allowed = known[1]
        asked = frozenset(_short(s) for s in form.get("scope", "").split()) or allowed
        refused = sorted(asked - allowed)
        if refused:
            return 400, {"error": "invalid_scope", "error_description": f"not granted: {' '.join(refused)}"}
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            self._grants = {t: g for t, g in self._grants.items() if g.expires_at > now}
            self._grants[token] = Grant(client_id or "", asked, now + self.ttl_s)
        body: dict[str, object] = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(self.ttl_s),
            "scope": " ".join(scope_url(s) for s in sorted(asked)),
        }
        return 200, body

    def check(self, authorization: str | None) -> Grant | None:
        """The grant behind an ``Authorization: Bearer`` header, or None when invalid/expired."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        token = authorization[7:].strip()
        with self._lock:
            grant = self._grants.get(token)
        if grant is None or grant.expires_at <= self.clock():
            return None
        return grant

    def revoke_all(self) -> int:
        """Forget every token (the simulator uses it to expire tokens mid-sync)."""
        with self._lock:
            count = len(self._grants)
            self._grants.clear()
        return count


def _client_auth(form: Mapping[str, str], authorization: str | None) -> tuple[str | None, str | None]:
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip()).decode()
        except (ValueError, UnicodeDecodeError):
            return None, None
        client_id, _, secret = decoded.partition(":")
        return unquote(client_id), unquote(secret)
    return form.get("client_id"), form.get("client_secret")
