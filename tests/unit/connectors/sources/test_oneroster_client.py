"""The OneRoster REST client against tiny fake providers (httpx.MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest

from connectors.oneroster.auth import ClientCredentials, TokenError, TokenIssuer
from connectors.oneroster.errors import ServerBusy
from connectors.oneroster.models import entity
from connectors.oneroster.query import Query
from connectors.sources.oneroster_rest.client import BadPayload, OneRosterClient

USERS = entity("users")


class Provider:
    """A fake provider: a token endpoint from our TokenIssuer and a scripted users endpoint."""

    def __init__(self, records: int = 25, ttl: float = 3600.0) -> None:
        self.now = 0.0
        self.issuer = TokenIssuer(
            {"c": ("s", frozenset({"roster.readonly"}))}, ttl_s=ttl, clock=lambda: self.now
        )
        self.records = [{"sourcedId": f"u{i:03d}"} for i in range(records)]
        self.script: list[httpx.Response] = []
        self.tokens = 0
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            form = dict(httpx.QueryParams(request.content.decode()))
            status, body = self.issuer.issue(form, request.headers.get("Authorization"))
            self.tokens += status == 200
            return httpx.Response(status, json=body)
        self.calls += 1
        if self.issuer.check(request.headers.get("Authorization")) is None:
            return httpx.Response(401, json={"imsx_codeMajor": "failure"})
        if self.script:
            return self.script.pop(0)
        limit = int(request.url.params.get("limit", 100))
        offset = int(request.url.params.get("offset", 0))
        page = self.records[offset : offset + min(limit, 7)]  # the provider caps pages at 7
        return httpx.Response(200, json={"users": page}, headers={"X-Total-Count": str(len(self.records))})


def _client(provider: Provider, secret: str = "s", sleeps: list[float] | None = None) -> OneRosterClient:
    clock = lambda: provider.now  # noqa: E731
    auth = ClientCredentials("http://sis/oauth/token", "c", secret, ["roster.readonly"], clock=clock)
    record = sleeps if sleeps is not None else []
    return OneRosterClient(
        "http://sis", auth, transport=httpx.MockTransport(provider), sleep=record.append, max_retries=3
    )


def test_pages_through_short_pages_with_one_token() -> None:
    provider = Provider(records=25)
    client = _client(provider)
    got = [r["sourcedId"] for page in client.pages(USERS, Query(limit=10)) for r in page.records]
    assert got == [r["sourcedId"] for r in provider.records]
    assert provider.tokens == 1


def test_token_expiring_mid_sync_is_renewed_once() -> None:
    provider = Provider(records=25, ttl=60)
    client = _client(provider)
    pages = client.pages(USERS, Query(limit=7))
    next(pages)
    provider.now += 3600  # every token is now expired at the provider
    rest = list(pages)
    assert sum(len(p.records) for p in rest) == 18
    assert provider.tokens == 2


def test_revoked_token_gets_one_retry_with_a_new_token() -> None:
    provider = Provider(records=3)
    client = _client(provider)
    client.get_page(USERS, Query())
    provider.issuer.revoke_all()
    assert len(client.get_page(USERS, Query()).records) == 3
    assert provider.tokens == 2


def test_wrong_secret_is_fatal_and_says_so() -> None:
    with pytest.raises(TokenError, match="invalid_client"):
        _client(Provider(), secret="wrong").get_page(USERS, Query())


def test_429_honours_retry_after_then_succeeds() -> None:
    provider = Provider(records=3)
    provider.script = [httpx.Response(429, headers={"Retry-After": "4"}), httpx.Response(503)]
    sleeps: list[float] = []
    page = _client(provider, sleeps=sleeps).get_page(USERS, Query())
    assert len(page.records) == 3
    assert sleeps[0] == 4.0 and len(sleeps) == 2


def test_429_forever_gives_up_after_max_retries() -> None:
    provider = Provider(records=3)
    provider.script = [httpx.Response(429, headers={"Retry-After": "1"})] * 10
    with pytest.raises(ServerBusy):
        _client(provider).get_page(USERS, Query())
    assert provider.calls == 4  # first try + 3 retries


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(
            200, text="<html><h1>502 Bad Gateway</h1></html>", headers={"content-type": "text/html"}
        ),
        httpx.Response(200, text='{"users": [{"sourcedId": '),
        httpx.Response(200, json={"orgs": []}),
    ],
)
def test_unreadable_pages_are_retried_then_carry_their_bytes(response: httpx.Response) -> None:
    provider = Provider(records=3)
    provider.script = [response] * 10
    with pytest.raises(BadPayload) as caught:
        _client(provider).get_page(USERS, Query())
    assert caught.value.body == response.content
    assert caught.value.reason == "malformed_response"


def test_unreadable_page_once_is_just_a_retry() -> None:
    provider = Provider(records=3)
    provider.script = [httpx.Response(200, text="<html>maintenance</html>")]
    assert [r["sourcedId"] for r in _client(provider).get_page(USERS, Query()).records] == [
        "u000",
        "u001",
        "u002",
    ]


def test_issuer_refuses_scopes_it_does_not_grant() -> None:
    issuer = TokenIssuer({"c": ("s", frozenset({"roster.readonly"}))})
    status, body = issuer.issue(
        {
            "grant_type": "client_credentials",
            "client_id": "c",
            "client_secret": "s",
            "scope": "gradebook.delete",
        },
        None,
    )
    assert status == 400 and body["error"] == "invalid_scope"
    status, body = issuer.issue({"grant_type": "password", "client_id": "c", "client_secret": "s"}, None)
    assert status == 400 and body["error"] == "unsupported_grant_type"
    status, body = issuer.issue(
        {"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"}, None
    )
    assert status == 200 and "roster.readonly" in str(body["scope"])
    assert issuer.check(f"Bearer {body['access_token']}") is not None
    assert issuer.check("Bearer nope") is None
    assert json.dumps(body)  # a JSON document
