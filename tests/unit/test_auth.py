"""API-key authentication of the inference endpoints (serving/auth.py), without Ray."""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Mapping

import pytest
from starlette.datastructures import Headers

from serving import app as serving_app
from serving import auth
from serving.api import RequestError
from serving.auth import API_KEY_ENV, ApiKeyAuth, Unauthorized, presented_keys

pytestmark = pytest.mark.unit

KEY = "s3cr3t-test-key-0123456789"


def headers(**values: str) -> Headers:
    """Starlette's case-insensitive request headers, as the routes see them."""
    return Headers({name.replace("_", "-"): value for name, value in values.items()})


def refused(guard: ApiKeyAuth, request_headers: Mapping[str, str]) -> RequestError:
    with pytest.raises(Unauthorized) as caught:
        guard.check(request_headers)
    return caught.value


def test_off_when_the_variable_is_unset_or_empty():
    for environ in ({}, {API_KEY_ENV: ""}, {API_KEY_ENV: "  ,  "}):
        guard = ApiKeyAuth.from_env(environ)
        assert not guard.enabled
        guard.check(headers())  # no key needed
        guard.check(headers(authorization="Bearer anything"))


def test_from_env_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, KEY)
    assert ApiKeyAuth.from_env().enabled
    monkeypatch.delenv(API_KEY_ENV)
    assert not ApiKeyAuth.from_env().enabled


@pytest.mark.parametrize(
    "request_headers",
    [
        headers(authorization=f"Bearer {KEY}"),
        headers(authorization=f"bearer {KEY}"),  # the scheme is case-insensitive
        headers(authorization=f"BEARER   {KEY}  "),
        headers(x_api_key=KEY),
        headers(X_API_KEY=KEY),  # header names are case-insensitive
        headers(authorization="Bearer wrong", x_api_key=KEY),  # one valid credential is enough
    ],
)
def test_a_valid_key_passes(request_headers):
    ApiKeyAuth(KEY).check(request_headers)


def test_missing_key_is_401_naming_both_headers():
    error = refused(ApiKeyAuth(KEY), headers())
    assert error.status == 401
    assert error.body() == {"error": error.message, "detail": []}
    assert "Authorization: Bearer" in error.message and "X-API-Key" in error.message
    assert error.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "request_headers",
    [
        headers(authorization="Bearer"),  # no credential
        headers(authorization="Bearer   "),
        headers(authorization=f"Basic {KEY}"),  # another scheme
        headers(authorization=KEY),  # no scheme
        headers(x_api_key="   "),
    ],
)
def test_unusable_credentials_count_as_missing(request_headers):
    assert "missing API key" in refused(ApiKeyAuth(KEY), request_headers).message


@pytest.mark.parametrize(
    "candidate",
    [
        "wrong",
        KEY[:-1],  # a prefix
        KEY + "x",  # an extension
        KEY.upper(),
        "x" * 100_000,  # very long
        "ключ-é-🔑",  # non-ASCII (compare_digest on str would raise TypeError)
        "\udcff",  # a lone surrogate
    ],
)
def test_a_wrong_key_is_401(candidate):
    # plain dicts with lower-case names: Starlette's Headers cannot even hold some of these
    for request_headers in ({"authorization": f"Bearer {candidate}"}, {"x-api-key": candidate}):
        error = refused(ApiKeyAuth(KEY), request_headers)
        assert (error.status, error.message) == (401, "invalid API key")
        assert error.body() == {"error": "invalid API key", "detail": []}


def test_latin1_header_bytes_do_not_crash():
    raw = Headers(raw=[(b"x-api-key", b"\xff\xfe\x00key")])
    assert refused(ApiKeyAuth(KEY), raw).status == 401


def test_several_keys_allow_a_rotation():
    guard = ApiKeyAuth(f" old-key , {KEY} ")
    guard.check(headers(x_api_key="old-key"))
    guard.check(headers(authorization=f"Bearer {KEY}"))
    assert refused(guard, headers(x_api_key="old-key ,")).status == 401
    assert refused(guard, headers(x_api_key=f"old-key,{KEY}")).status == 401


def test_keys_are_compared_with_compare_digest_for_every_configured_key(monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    guard = ApiKeyAuth(["first", "second", "third"])
    guard.check(headers(x_api_key="first"))  # matches the first key, still compares all three
    assert len(calls) == 3
    assert all(len(a) == len(b) == 32 for a, b in calls)  # SHA-256 digests: length says nothing
    assert refused(guard, headers(x_api_key="nope")).status == 401


def test_configured_keys_are_not_kept_in_clear():
    guard = ApiKeyAuth(KEY)
    assert KEY not in repr(vars(guard))


def test_presented_keys_reads_bearer_and_x_api_key():
    assert presented_keys(headers()) == []
    assert presented_keys(headers(authorization="Bearer a", x_api_key="b")) == ["a", "b"]
    assert presented_keys(headers(authorization="Token a")) == []


def test_every_inference_route_checks_the_key_and_health_does_not():
    """The wiring in serving/app.py: inference handlers refuse before reading the body."""
    import asyncio

    from starlette.requests import Request

    from services.spec import load_spec
    from serving.model_slot import ModelSlot
    from serving.routing import Router
    from serving.telemetry import RequestTelemetry

    spec = load_spec("fraud-detection")
    args = serving_app.AppArgs(
        service=spec.name,
        max_request_rows=spec.serving.max_request_rows,
        max_batch_rows=spec.serving.max_batch_rows,
    )
    realtime = serving_app.realtime_deployment(args).func_or_class
    replica = object.__new__(realtime)
    replica.auth = ApiKeyAuth(KEY)
    replica.service, replica.max_batch_rows = spec.name, spec.serving.max_batch_rows
    replica.merging = spec.serving.request_merging
    replica.slot = ModelSlot(spec.name, spec.serving.max_request_rows)
    replica.candidate = ModelSlot(spec.name, spec.serving.max_request_rows)
    replica.router = Router(None)
    replica.telemetry = RequestTelemetry(spec.name, "w", enabled=False)

    async def body_must_not_be_read() -> dict:
        raise AssertionError("the body was read before the key was checked")

    def request() -> Request:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "headers": [],
            "query_string": b"",
            "root_path": "",
        }
        return Request(scope, body_must_not_be_read)

    for name in ("predict", "invocations", "batch", "feedback"):
        response = asyncio.run(getattr(realtime, name)(replica, request()))
        assert response.status_code == 401, name
    assert asyncio.run(realtime.health(replica)).status_code == 503  # open: not 401
    # the document is the served version's: none is loaded here
    assert asyncio.run(realtime.openapi_json(replica)).status_code == 503
    assert asyncio.run(realtime.docs(replica, request())).status_code == 200
    assert "self.auth = ApiKeyAuth.from_env()" in inspect.getsource(serving_app.realtime_deployment)
