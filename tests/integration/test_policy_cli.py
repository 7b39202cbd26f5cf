"""``secmw policy explain``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secmw.cli import main

CONFIG = """
[auth]
public_paths = ["/healthz"]

[[policy.rules]]
id = "signed-in"
effect = "allow"
when = { authenticated = true }

[[policy.rules]]
id = "admin-area"
effect = "deny"
reason = "admins only"
when = { paths = ["/admin/**"] }
unless = { roles_any = ["admin"] }

[[policy.rules]]
id = "mfa-delete"
effect = "step_up"
acr_values = ["urn:mfa"]
when = { tools = ["delete_*"] }
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(CONFIG)
    return path


def explain(config: Path, request: dict[str, object], *extra: str) -> int:
    return main(
        ["policy", "explain", "--config", str(config), "--request", json.dumps(request), *extra]
    )


def test_explain_names_the_deciding_rule_and_every_other(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        explain(
            config,
            {
                "method": "GET",
                "path": "/admin/users",
                "principal": {"sub": "bob", "roles": ["dev"]},
            },
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "decision: deny by admin-area: admins only"
    assert any(line.split()[:3] == ["signed-in", "allow", "APPLIES"] for line in out)
    assert any(
        line.split()[:2] == ["auth.public_paths", "allow"] and "when.paths" in line for line in out
    )


def test_explain_json_for_tools_and_anonymous(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = {
        "path": "/mcp",
        "principal": {"sub": "a", "acr": "urn:pwd"},
        "rpc": {"tool": "delete_file", "arguments": {}},
    }
    assert explain(config, request, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["decision"] == "step_up"
    assert result["rule_ids"] == ["mfa-delete"]
    assert explain(config, {"path": "/x"}) == 0
    out = capsys.readouterr().out
    assert "policy:default" in out and "anonymous" in out


def test_explain_reads_a_request_file_and_reports_bad_input(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"path": "/healthz"}))
    assert main(["policy", "explain", "--config", str(config), "--request", f"@{request}"]) == 0
    assert capsys.readouterr().out.startswith("decision: allow by auth.public_paths")
    assert main(["policy", "explain", "--config", str(config), "--request", "[1]"]) == 2
    assert main(["policy", "explain", "--config", str(config), "--request", "{bad"]) == 2
    assert (
        main(["policy", "explain", "--config", str(tmp_path / "none.toml"), "--request", "{}"]) == 2
    )


def test_explain_reports_requests_refused_before_the_policy(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert explain(config, {"path": "/../etc"}) == 0
    assert "refused before any rule: 400" in capsys.readouterr().out


@pytest.mark.parametrize(
    "principal",
    [
        {"sub": "b", "tenant": ["a"]},
        {"sub": "b", "tenant": {"a": 1}},
        {"sub": "b", "auth_time": "yesterday"},
        {"sub": "b", "auth_time": 10**400},
        {"sub": "b", "roles": "admin"},
    ],
)
def test_explain_reads_a_principal_like_a_token_would(
    principal: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "p.toml"
    config.write_text(
        '[[policy.rules]]\nid = "admins"\neffect = "allow"\nwhen = { roles_any = ["admin"] }\n'
    )
    request = json.dumps({"path": "/", "principal": principal})
    code = main(["policy", "explain", "--config", str(config), "--request", request])
    out = capsys.readouterr().out
    assert code in (0, 1)
    # "admin" as a roles string is one role (as in a token), never the letters a, d, m, i, n.
    assert out.startswith(
        "decision: allow" if principal.get("roles") == "admin" else "decision: deny"
    )


@pytest.mark.parametrize(
    ("request_json", "named"),
    [
        ({"pth": "/admin"}, "'pth'"),
        ({"path": "/x", "principle": {"sub": "alice"}}, "'principle'"),
        ({"rpc": {"tool": "t", "argument": {}}}, "rpc.'argument'"),
        ({"findings": [{"source": "inspect", "kind": "k", "scor": 1}]}, "findings[0].'scor'"),
    ],
)
def test_explain_refuses_misspelt_keys(
    config: Path, capsys: pytest.CaptureFixture[str], request_json: dict[str, object], named: str
) -> None:
    argv = ["policy", "explain", "--config", str(config), "--request", json.dumps(request_json)]
    assert main(argv) == 2
    assert f"unknown key {named}" in capsys.readouterr().err
