"""OAuth resource-server behaviour: RFC 9728 metadata, credential stripping, config wiring."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from secmw import SecurityMiddleware
from secmw.auth import APIKeyAuthenticator, CompositeAuthenticator, FileAPIKeyStore
from secmw.auth.jwt import JWTAuthenticator
from secmw.config import build_pipeline, parse_config
from secmw.errors import ConfigError
from secmw.testing import AuditCapture, TokenIssuer
from tests.support import EchoApp, call, http_scope

pytestmark = pytest.mark.anyio

ISSUER = TokenIssuer(algorithm="ES256", kid="rs-1")
RESOURCE = {
    "resource": "https://api.example.test/",
    "authorization_servers": ["https://auth.example.test"],
    "scopes_supported": ["read"],
    "resource_documentation": "https://docs.example.test",
}


async def test_metadata_document_is_public_and_exact() -> None:
    audit = AuditCapture()
    app = SecurityMiddleware(EchoApp(), {"auth": {"protected_resource": RESOURCE}}, audit=audit)
    sent = await call(app, http_scope("/.well-known/oauth-protected-resource"))
    assert sent.status == 200
    assert sent.json() == {
        "resource": "https://api.example.test/",
        "authorization_servers": ["https://auth.example.test"],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["read"],
        "resource_documentation": "https://docs.example.test",
    }
    assert sent.header("content-type") == "application/json"
    assert sent.header("x-request-id")
    assert audit.last.name == "authz_allow" and audit.last.reason == "served by secmw"
    head = await call(app, http_scope("/.well-known/oauth-protected-resource", method="HEAD"))
    assert head.status == 200 and head.body == b""
    post = await call(app, http_scope("/.well-known/oauth-protected-resource", method="POST"))
    assert post.status == 405 and post.header("allow") == "GET, HEAD"
    # Everything else stays closed, and the challenge points at the document.
    denied = await call(app, http_scope("/api"))
    assert denied.status == 401
    assert 'resource_metadata="https://api.example.test/.well-known/oauth-protected-resource"' in (
        denied.header("www-authenticate") or ""
    )


async def test_explicit_metadata_path_and_url_win() -> None:
    config = {
        "auth": {
            "resource_metadata": "https://cdn.example.test/prm.json",
            "protected_resource": {**RESOURCE, "path": "/prm.json"},
        }
    }
    app = SecurityMiddleware(EchoApp(), config)
    assert (await call(app, http_scope("/prm.json"))).status == 200
    denied = await call(app, http_scope("/.well-known/oauth-protected-resource"))
    assert 'resource_metadata="https://cdn.example.test/prm.json"' in (
        denied.header("www-authenticate") or ""
    )


@pytest.mark.parametrize("strip", [True, False])
async def test_credentials_are_stripped_before_the_app_when_asked(
    tmp_path: Path, strip: bool
) -> None:
    path = tmp_path / "keys.json"
    _, key = FileAPIKeyStore(path, create=True).create("svc")
    inner = EchoApp()
    config = {
        "auth": {
            "strip_credentials": strip,
            "jwt": ISSUER.jwt_config(),
            "api_key": {"file": str(path)},
        }
    }
    app = SecurityMiddleware(inner, config)
    for header in (("authorization", f"Bearer {ISSUER.mint()}"), ("x-api-key", key)):
        sent = await call(app, http_scope("/api", headers=[header, ("accept", "x/y")]))
        assert sent.status == 200
        names = [name for name, _ in inner.scopes[-1]["headers"]]
        assert (header[0].encode() in names) is not strip
        assert b"accept" in names


async def test_an_api_key_header_spelled_with_underscores_is_that_credential(
    tmp_path: Path,
) -> None:
    # Django and the WSGI bridges read X_API_Key as X-API-Key: it must neither reach
    # the app past strip_credentials nor ride along unchecked next to a bearer token.
    path = tmp_path / "keys.json"
    _, key = FileAPIKeyStore(path, create=True).create("svc")
    inner = EchoApp()
    audit = AuditCapture()
    config = {
        "auth": {
            "strip_credentials": True,
            "jwt": ISSUER.jwt_config(),
            "api_key": {"file": str(path)},
        }
    }
    app = SecurityMiddleware(inner, config, audit=audit)
    both = [("authorization", f"Bearer {ISSUER.mint()}"), ("X_API_Key", key)]
    sent = await call(app, http_scope("/api", headers=both))
    assert sent.status == 400 and not inner.scopes
    assert audit.last.reason == "both x-api-key and Authorization"
    sent = await call(app, http_scope("/api", headers=[("X_Api_Key", key), ("accept", "x/y")]))
    assert sent.status == 200
    assert [name for name, _ in inner.scopes[-1]["headers"]] == [b"accept"]
    twice = [("x-api-key", key), ("x_api_key", key)]
    sent = await call(app, http_scope("/api", headers=twice))
    assert sent.status == 400 and audit.last.reason == "duplicate credential header"


def test_config_builds_a_composite_in_order(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    FileAPIKeyStore(path, create=True)
    config = parse_config(
        {"auth": {"jwt": ISSUER.jwt_config(), "api_key": {"file": str(path), "header": "X-Key"}}}
    )
    pipeline = build_pipeline(config)
    composite = pipeline.authenticator
    assert isinstance(composite, CompositeAuthenticator)
    first, second = composite.authenticators
    assert isinstance(first, JWTAuthenticator) and isinstance(second, APIKeyAuthenticator)
    assert second.header == "x-key"


@pytest.mark.parametrize(
    ("auth", "key", "message"),
    [
        pytest.param(
            {"api_key": {"file": "/nonexistent/keys.json"}},
            "auth.api_key.file",
            "cannot read",
            id="missing-key-file",
        ),
        pytest.param(
            {"jwt": {"issuer": "i", "audience": "a", "jwks_url": "file:///etc/passwd"}},
            "auth.jwt.jwks_url",
            "https URL",
            id="jwks-url-scheme",
        ),
        pytest.param(
            {"jwt": {"issuer": "i", "audience": "a", "jwks_url": "http://login.example.com/j"}},
            "auth.jwt.jwks_url",
            "must use https",
            id="jwks-url-plain-http",
        ),
        pytest.param(
            {
                "introspection": {
                    "endpoint": "http://10.0.0.1/i",
                    "client_id": "c",
                    "client_secret": "s",
                }
            },
            "auth.introspection.endpoint",
            "must use https",
            id="introspection-plain-http",
        ),
        pytest.param(
            {
                "jwt": {
                    "issuer": "i",
                    "audience": "a",
                    "jwks_url": "https://x/j",
                    "jwks_min_ttl": 9,
                    "jwks_max_ttl": 2,
                }
            },
            "auth.jwt.jwks_min_ttl",
            "must not exceed",
            id="ttl-order",
        ),
        pytest.param(
            {"introspection": {"endpoint": "https://as/introspect", "client_id": "c"}},
            "auth.introspection",
            "exactly one of client_secret",
            id="introspection-no-secret",
        ),
        pytest.param(
            {"introspection": {"endpoint": "https://as/i", "client_id": "c", "client_secret": "s"}},
            "auth.introspection.audience",
            "required",
            id="introspection-no-audience",
        ),
        pytest.param(
            {
                "introspection": {
                    "endpoint": "https://as/i",
                    "client_id": "c",
                    "client_secret": "s",
                    "audience": "https://api/",
                    "verify_audience": False,
                }
            },
            "auth.introspection.verify_audience",
            "is false while audience is set",
            id="introspection-audience-contradiction",
        ),
        pytest.param(
            {
                "introspection": {
                    "endpoint": "https://as/i",
                    "client_id": "c",
                    "client_secret_env": "SECMW_TEST_UNSET_VAR",
                    "audience": "https://api/",
                }
            },
            "auth.introspection.client_secret_env",
            "is not set",
            id="introspection-env-unset",
        ),
        pytest.param(
            {
                "protected_resource": {
                    "resource": "https://x/#frag",
                    "authorization_servers": ["https://a"],
                }
            },
            "auth.protected_resource.resource",
            "fragment",
            id="resource-fragment",
        ),
        pytest.param(
            {"protected_resource": {"resource": "https://x/", "authorization_servers": []}},
            "auth.protected_resource.authorization_servers",
            "at least 1",
            id="no-authorization-server",
        ),
        *(
            pytest.param(
                {"api_key": {"file": "k.json", "authorization_scheme": scheme}},
                "auth.api_key.authorization_scheme",
                message,
                id=f"api-key-scheme-{scheme}",
            )
            for scheme, message in (
                ("Bearer-Key", "must not read as Bearer"),
                ("Bearer_ApiKey", "must not read as Bearer"),
                ("Bearer ", "must be an HTTP auth-scheme"),
                ("Api Key", "must be an HTTP auth-scheme"),
            )
        ),
        *(
            pytest.param(
                {
                    "protected_resource": {
                        "resource": resource,
                        "authorization_servers": ["https://a"],
                    }
                },
                "auth.protected_resource.path",
                "cannot be served as written",
                id=f"resource-path-{resource}",
            )
            for resource in (
                "https://x/tenant%20a/mcp",
                "https://x/a/./mcp",
                "https://x/caf\u00e9",
                "https://x/v1;mcp",
                "https://x/a//mcp",
                'https://x/m"cp',
            )
        ),
        *(
            pytest.param(
                {
                    "protected_resource": {
                        "resource": "https://x/mcp",
                        "authorization_servers": ["https://a"],
                        "path": path,
                    }
                },
                "auth.protected_resource.path",
                "must be a plain path",
                id=f"explicit-path-{path}",
            )
            for path in ("/m/tenant%20a", "/m/v1;mcp", "/m/./mcp", "/m/caf\u00e9")
        ),
        pytest.param(
            {"api_key": {"file": "k.json", "header": "bad header"}},
            "auth.api_key.header",
            "not a valid header",
            id="bad-header",
        ),
        pytest.param(
            {"jwt": ISSUER.jwt_config(), "api_key": {"file": "k.json", "header": "Authorization"}},
            "auth",
            "cannot be authorization next to bearer tokens",
            id="api-key-in-authorization",
        ),
        pytest.param(
            {
                "jwt": ISSUER.jwt_config(),
                "api_key": {"file": "k.json", "authorization_scheme": "bearer"},
            },
            "auth",
            "cannot be Bearer",
            id="api-key-as-bearer",
        ),
        pytest.param(
            {
                "protected_resource": {
                    "resource": "https://x/",
                    "authorization_servers": ["https://as/"],
                    "path": "/.well-known/oauth-protected-resource/",
                }
            },
            "auth.protected_resource.path",
            "canonical",
            id="metadata-path-trailing-slash",
        ),
        *(
            pytest.param(
                {
                    "protected_resource": {
                        "resource": "https://x/",
                        "authorization_servers": ["https://as/"],
                        "bearer_methods_supported": methods,
                    }
                },
                "auth.protected_resource.bearer_methods_supported",
                'only "header"',
                id=f"bearer-methods-{'-'.join(methods)}",
            )
            # Clients would follow the document: query tokens are a 400, body ones unread.
            for methods in (["query"], ["header", "body"])
        ),
        *(
            pytest.param(
                {
                    "protected_resource": {
                        "resource": "https://x/",
                        "authorization_servers": ["https://as.example/", issuer],
                    }
                },
                "auth.protected_resource.authorization_servers",
                message,
                id=f"issuer-{issuer}",
            )
            # Clients fetch its metadata and send the user there to log in.
            for issuer, message in (
                ("http://login.example.com", "must use https"),
                ("login.example.com", "must be an https URL"),
                ("https://as.example/?tenant=a", "no query or fragment"),
                ("https://as.example/#x", "no query or fragment"),
            )
        ),
        pytest.param(
            {"allow_anonymous": False, "public_paths": ["/a/../b"]},
            "public_paths[0]",
            "is not",
            id="public-path-dot-dot",
        ),
        pytest.param(
            {"public_paths": ["/health;x"]},
            "public_paths[0]",
            "is not",
            id="public-path-matrix",
        ),
        pytest.param(
            {"public_paths": ["/a%2Fb"]}, "public_paths[0]", "is not", id="public-path-escape"
        ),
        pytest.param(
            {"public_paths": ["/a\\b"]}, "public_paths[0]", "is not", id="public-path-backslash"
        ),
        pytest.param(
            {"public_paths": ["/a\x85"]}, "public_paths[0]", "is not", id="public-path-control"
        ),
    ],
)
def test_config_errors_name_their_key(auth: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_pipeline(parse_config({"auth": auth}))
    text = str(info.value)
    assert key in text and message in text, text


def test_a_jwks_file_entry_that_is_not_an_object_is_a_config_error(tmp_path: Any) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [ISSUER.jwks()["keys"][0], 5]}))
    config = {"auth": {"jwt": {**ISSUER.jwt_config(), "jwks_file": str(path)}}}
    config["auth"]["jwt"].pop("keys", None)
    with pytest.raises(ConfigError, match=r"jwks_file\.keys\[1\]"):
        build_pipeline(parse_config(config))


def test_introspection_from_config_with_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from secmw.auth.introspection import IntrospectionAuthenticator

    monkeypatch.setenv("SECMW_TEST_SECRET", "s3cret")
    config = parse_config(
        {
            "auth": {
                "jwt": ISSUER.jwt_config(),
                "introspection": {
                    "endpoint": "https://as.example.test/introspect",
                    "client_id": "rs",
                    "client_secret_env": "SECMW_TEST_SECRET",
                    "audience": "https://api.example.test/",
                },
            }
        }
    )
    composite = build_pipeline(config).authenticator
    assert isinstance(composite, CompositeAuthenticator)
    jwt_auth, introspection = composite.authenticators
    assert isinstance(introspection, IntrospectionAuthenticator)
    assert jwt_auth._jws_only  # type: ignore[union-attr]


def test_missing_httpx_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from secmw.auth.introspection import IntrospectionAuthenticator

    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ConfigError, match=r"secmw\[gateway\]"):
        IntrospectionAuthenticator("https://as/i", client_id="c", client_secret="s", audience="a")


async def test_api_key_file_that_breaks_is_503(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    _, key = FileAPIKeyStore(path, create=True).create("svc")
    app = SecurityMiddleware(
        EchoApp(), {"auth": {"api_key": {"file": str(path), "reload_interval": 0}}}
    )
    assert (await call(app, http_scope("/", headers=[("x-api-key", key)]))).status == 200
    path.write_text(json.dumps({"keys": "nope"}))
    sent = await call(app, http_scope("/", headers=[("x-api-key", key)]))
    assert sent.status == 503


def test_query_token_opt_in_is_a_listed_fail_open() -> None:
    pipeline = build_pipeline(parse_config({"auth": {"websocket": {"query_token": True}}}))
    assert "auth.websocket.query_token" in pipeline.fail_open
    assert build_pipeline(parse_config({})).fail_open == ()


@pytest.mark.parametrize("build", ["config", "code"])
async def test_a_jwt_section_without_exp_is_a_listed_fail_open_however_built(build: str) -> None:
    from secmw.auth import MemoryDenylist
    from secmw.auth.build import build_jwt, credential_settings

    config = parse_config({"auth": {"jwt": ISSUER.jwt_config(required_claims=["sub"])}})
    components: dict[str, Any] = {"audit": AuditCapture()}
    if build == "code":
        assert config.auth.jwt is not None
        components["authenticator"] = build_jwt(
            config.auth.jwt,
            credentials=credential_settings(config.auth),
            revocation=MemoryDenylist(),
        )
    pipeline = build_pipeline(config, **components)
    await pipeline.startup()
    started = components["audit"].named("sys_startup")[-1]
    assert started.details["fail_open"] == ["auth.jwt.required_claims"]
    assert started.severity == "warning"


async def test_empty_strings_switch_off_the_alternative_places(tmp_path: Path) -> None:
    from secmw.auth.bearer import encode_subprotocol
    from tests.support import Receiver, ws_scope

    path = tmp_path / "keys.json"
    _, key = FileAPIKeyStore(path, create=True).create("svc")
    config = {
        "auth": {
            "jwt": ISSUER.jwt_config(),
            "api_key": {"file": str(path), "authorization_scheme": ""},
            "websocket": {"subprotocol_prefix": ""},
        }
    }
    app = SecurityMiddleware(EchoApp(), config)
    sent = await call(app, http_scope("/", headers=[("authorization", f"ApiKey {key}")]))
    assert sent.status == 401 and "error=" not in (sent.header("www-authenticate") or "")
    scope = ws_scope()
    scope["subprotocols"] = [encode_subprotocol(ISSUER.mint())]
    sent = await call(app, scope, Receiver([{"type": "websocket.connect"}]))
    assert sent.messages[0]["type"] == "websocket.close"


async def test_a_query_of_the_resource_identifier_stays_in_the_metadata_url() -> None:
    # RFC 9728 section 3.1: the well-known path goes between host and path; the
    # query of the resource identifier stays a query.
    resource = {**RESOURCE, "resource": "https://api.example.test/mcp?tenant=t1"}
    app = SecurityMiddleware(EchoApp(), {"auth": {"protected_resource": resource}})
    denied = await call(app, http_scope("/api"))
    expected = "https://api.example.test/.well-known/oauth-protected-resource/mcp?tenant=t1"
    assert f'resource_metadata="{expected}"' in (denied.header("www-authenticate") or "")
    served = await call(
        app, http_scope("/.well-known/oauth-protected-resource/mcp", query="tenant=t1")
    )
    assert served.status == 200 and served.json()["resource"] == resource["resource"]


async def test_a_jwks_file_skips_keys_that_are_not_for_verifying_signatures(
    tmp_path: Path,
) -> None:
    # A copy of a published set: its encryption, wrapping and shared keys are
    # skipped as from jwks_url, not trusted (the shared one would let anyone sign).
    secret = b"a-shared-secret-anyone-can-read-32+"
    enc = TokenIssuer(algorithm="RS256", kid="enc")
    wraps = TokenIssuer(algorithm="RS256", kid="wraps")
    shared = {
        "kty": "oct",
        "kid": "shared",
        "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode(),
    }
    document = {
        "keys": [
            ISSUER.public_jwk,
            {**enc.public_jwk, "use": "enc", "alg": "RSA-OAEP"},
            {**wraps.public_jwk, "key_ops": ["wrapKey"]},
            shared,
        ]
    }
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(document))
    jwt_config = {**ISSUER.jwt_config(), "jwks_file": str(path)}
    jwt_config.pop("keys", None)
    app = SecurityMiddleware(EchoApp(), {"auth": {"jwt": jwt_config}})
    claims = {"sub": "mallory", "iss": ISSUER.issuer, "aud": ISSUER.audience, "exp": 2**33}
    forged = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "shared"})
    for token, status in (
        (ISSUER.mint("alice"), 200),
        (forged, 401),
        (enc.mint("mallory"), 401),
        (wraps.mint("mallory"), 401),
    ):
        sent = await call(app, http_scope("/x", headers=[("authorization", f"Bearer {token}")]))
        assert sent.status == status


@pytest.mark.parametrize(
    "resource",
    ["https://x/@acme/github/mcp", "https://x/servers/github:prod/mcp", "https://x/mcp+sse"],
)
async def test_resources_with_plain_path_characters_are_served_where_advertised(
    resource: str,
) -> None:
    config = {
        "auth": {
            "jwt": ISSUER.jwt_config(),
            "protected_resource": {"resource": resource, "authorization_servers": ["https://a"]},
        }
    }
    app = SecurityMiddleware(EchoApp(), config)
    challenge = (await call(app, http_scope("/mcp"))).header("www-authenticate") or ""
    advertised = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
    path = advertised.split("://", 1)[1].split("/", 1)[1]
    served = await call(app, http_scope("/" + path))
    assert served.status == 200
    assert json.loads(served.body)["resource"] == resource
