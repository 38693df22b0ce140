"""A catalogue of bad tokens and hypothesis fuzzing of the token string, against a real daphne,
while a valid client on the same server keeps working. None of them reaches user code."""

from __future__ import annotations

import base64
import json
import string
from urllib.parse import quote

import jwt
import pytest
from django.conf import settings
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rest_framework_simplejwt.tokens import RefreshToken, SlidingToken
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as sync_connect

from rockstar_ws.auth.tokens import access_token_for
from tests.auth_helpers import ensure_inactive_user, probe_id, user_ids, with_token
from tests.client import connect, recv_json
from tests.conftest import probe

PATH = "/ws/test/auth/any"
FAR = 4102444800  # 2100-01-01


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def catalogue(ids: dict[str, int]) -> dict[str, tuple[str, str]]:
    """name -> (how it is sent: query/header/subprotocol, token)."""
    key = settings.SECRET_KEY
    uid = str(ids["alice"])

    def claims(**kw):
        base = {"token_type": "access", "exp": FAR, "iat": 1700000000, "jti": "a" * 32, "user_id": uid,
                "scope": "chat:read chat:write"}
        base.update(kw)
        return {k: v for k, v in base.items() if v is not None}

    good = str(access_token_for(ids["alice"], scopes="chat:read chat:write"))
    head, body, sig = good.split(".")
    bob_good = str(access_token_for(ids["bob"], scopes="chat:read"))
    refresh = RefreshToken()
    refresh["user_id"] = uid
    sliding = SlidingToken()
    sliding["user_id"] = uid
    escalated = json.loads(unb64(body))
    escalated["user_id"] = str(ids["admin"])
    return {
        "empty": ("query", ""),
        "word": ("query", "abc"),
        "three-dots": ("query", "..."),
        "three-empty-parts": ("query", "a.b.c"),
        "two-parts": ("query", f"{head}.{body}"),
        "four-parts": ("query", f"{good}.{sig}"),
        "truncated-signature": ("query", good[:-8]),
        "signature-of-another-token": ("query", f"{head}.{body}.{bob_good.split('.')[2]}"),
        "payload-escalated-to-admin": ("query", f"{head}.{b64(json.dumps(escalated).encode())}.{sig}"),
        "other-key": ("query", jwt.encode(claims(), "x" * 50, algorithm="HS256")),
        "alg-none": ("query", jwt.encode(claims(), None, algorithm="none")),
        "alg-none-with-signature": ("query", jwt.encode(claims(), None, algorithm="none") + sig),
        "alg-HS512-right-key": ("query", jwt.encode(claims(), key, algorithm="HS512")),
        "alg-HS384-right-key": ("query", jwt.encode(claims(), key, algorithm="HS384")),
        "expired": ("query", jwt.encode(claims(exp=1700000000), key, algorithm="HS256")),
        "not-yet-valid": ("query", jwt.encode(claims(nbf=FAR - 10), key, algorithm="HS256")),
        "no-exp": ("query", jwt.encode(claims(exp=None), key, algorithm="HS256")),
        "exp-not-a-number": ("query", jwt.encode(claims(exp="never"), key, algorithm="HS256")),
        "no-jti": ("query", jwt.encode(claims(jti=None), key, algorithm="HS256")),
        "no-token-type": ("query", jwt.encode(claims(token_type=None), key, algorithm="HS256")),
        "refresh-token": ("query", str(refresh)),
        "sliding-token": ("query", str(sliding)),
        "no-user-id": ("query", jwt.encode(claims(user_id=None), key, algorithm="HS256")),
        "user-id-not-a-number": ("query", jwt.encode(claims(user_id="alice"), key, algorithm="HS256")),
        "user-id-a-list": ("query", jwt.encode(claims(user_id=[uid]), key, algorithm="HS256")),
        "user-id-an-object": ("query", jwt.encode(claims(user_id={"id": uid}), key, algorithm="HS256")),
        "unknown-user": ("query", jwt.encode(claims(user_id="987654321"), key, algorithm="HS256")),
        "inactive-user": ("query", str(access_token_for(ids["dormant"], scopes="chat:read"))),
        "payload-not-json": ("query", f"{head}.{b64(b'not json')}.{sig}"),
        "header-not-json": ("query", f"{b64(b'{nope')}.{body}.{sig}"),
        "payload-a-list": ("query", jwt.api_jws.encode(b"[1,2,3]", key, algorithm="HS256")),
        "unicode": ("query", "tök€n.☃.✓"),
        "long-garbage": ("query", "A" * 6000),
        "header-bad-signature": ("header", good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")),
        "header-expired": ("header", str(access_token_for(ids["alice"], scopes="chat:read", lifetime=-60))),
        "subprotocol-alg-none": ("subprotocol", jwt.encode(claims(), None, algorithm="none")),
        "subprotocol-garbage": ("subprotocol", "garbage"),
    }


@pytest.fixture(scope="module")
def ids(server_env) -> dict[str, int]:
    return {**user_ids(server_env), "dormant": ensure_inactive_user(server_env)}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_catalogue_of_bad_tokens_all_refused_while_a_valid_client_works(daphne, ids):
    bad = catalogue(ids)
    assert len(bad) >= 25
    p = probe_id()
    good = str(access_token_for(ids["bob"], scopes="chat:read"))
    async with connect(daphne, with_token(PATH, good, probe_id())) as valid:
        assert (await recv_json(valid))["username"] == "bob"
        for i, (name, (how, token)) in enumerate(bad.items()):
            kw: dict = {}
            path = f"{PATH}?probe={p}"
            if how == "query":
                path = with_token(PATH, token, p)
            elif how == "header":
                kw["additional_headers"] = {"Authorization": f"Bearer {token}"}
            else:
                kw["subprotocols"] = ["rockstar.bearer", token]
            try:
                async with connect(daphne, path, **kw):
                    pass
            except InvalidStatus as exc:
                assert exc.response.status_code == 401, name
            else:
                raise AssertionError(f"bad token {name!r} was accepted")
            await valid.send(f"still fine {i}")
            assert await valid.recv() == f"User {ids['bob']}: still fine {i}"
    events = await probe(daphne, "events")
    assert [e for e in events if e.endswith(f":{p}")] == []


# -- property-based fuzzing of the token string -------------------------------------------------------
TOKEN_CHARS = string.ascii_letters + string.digits + "-_.=+/"


@pytest.fixture(scope="module")
def valid_sync_client(daphne, ids):
    """A valid client held open (synchronous websockets client) during the fuzzing."""
    token = str(access_token_for(ids["alice"], scopes="chat:read chat:write", lifetime=600))
    with sync_connect(daphne.url + with_token(PATH, token, probe_id()), open_timeout=10) as ws:
        json.loads(ws.recv(timeout=10))
        yield ws


def _refused(daphne, token: str, probe: str) -> int:
    try:
        with sync_connect(daphne.url + with_token(PATH, token, probe), open_timeout=10):
            pass
    except InvalidStatus as exc:
        return exc.response.status_code
    return 101


def _same_bytes(a: str, b: str) -> bool:
    """True when two compact JWS strings decode to the same segments (base64 padding bits)."""
    pa, pb = a.split("."), b.split(".")
    if len(pa) != len(pb):
        return False
    try:
        return all(unb64(x) == unb64(y) for x, y in zip(pa, pb, strict=True))
    except Exception:
        return False


FUZZ = "fuzz"
fuzz_settings = hsettings(max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@fuzz_settings
@given(token=st.one_of(st.text(max_size=300), st.text(alphabet=TOKEN_CHARS, max_size=400)))
def test_fuzzed_token_strings_are_refused(daphne, valid_sync_client, token):
    assert _refused(daphne, token, FUZZ) == 401
    valid_sync_client.send("ping")
    assert valid_sync_client.recv(timeout=10).endswith(": ping")


@fuzz_settings
@given(data=st.data())
def test_mutated_valid_tokens_are_refused(daphne, valid_sync_client, ids, data):
    good = str(access_token_for(ids["alice"], scopes="chat:read"))
    i = data.draw(st.integers(min_value=0, max_value=len(good) - 1), label="position")
    c = data.draw(st.sampled_from(TOKEN_CHARS), label="replacement")
    mutated = good[:i] + c + good[i + 1:]
    assume(not _same_bytes(mutated, good))  # a base64 padding bit flip decodes to the same token
    assert _refused(daphne, mutated, FUZZ) == 401
    valid_sync_client.send("ping")
    assert valid_sync_client.recv(timeout=10).endswith(": ping")


async def test_fuzzing_never_reached_user_code(daphne):
    events = await probe(daphne, "events")
    assert [e for e in events if e.endswith(f":{FUZZ}")] == []


def test_query_token_is_url_decoded_once(daphne, ids):
    # '+' and '%2B' must not turn a bad token into a good one or a good one into a bad one.
    good = str(access_token_for(ids["alice"], scopes="chat:read"))
    with sync_connect(f"{daphne.url}{PATH}?token={quote(good)}&probe={probe_id()}", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["username"] == "alice"
