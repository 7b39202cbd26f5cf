"""Start the example MCP server and the secmw gateway in front of it.

    python examples/mcp_gateway/run.py [--port 8002] [--mcp-port 8003] [--state-dir DIR]

Writes a development signing key (dev.pem, jwks.json) and gateway.json (gateway.toml
with the chosen ports) into the state directory, starts server.py on 127.0.0.1,
then ``secmw gateway --config gateway.json`` there, and prints tokens to try it
with. Ctrl-C stops both; the audit trail stays in the state directory.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

from secmw.testing import TokenIssuer

HERE = Path(__file__).resolve().parent


def gateway_config(port: int, mcp_port: int) -> dict[str, Any]:
    """gateway.toml with the gateway on ``port`` and the MCP server on ``mcp_port``."""
    config = tomllib.loads((HERE / "gateway.toml").read_text(encoding="utf-8"))
    upstream = f"http://127.0.0.1:{mcp_port}"
    config["gateway"]["listen"] = f"127.0.0.1:{port}"
    config["gateway"]["egress"]["allow"] = [upstream]
    config["gateway"]["upstreams"]["files"]["targets"] = [upstream]
    return config


def wait_for(url: str, processes: list[subprocess.Popen[bytes]], seconds: float = 30) -> None:
    """Poll ``url`` until it answers (any status), a process dies or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            raise SystemExit("a process exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - fixed http URL
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {seconds:.0f}s")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the children (gateway first), then kill what is still running."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _exit_on_term(signum: int, frame: Any) -> NoReturn:
    raise SystemExit(0)


def main() -> int:
    parser = argparse.ArgumentParser(description="secmw example: an MCP gateway")
    parser.add_argument("--port", type=int, default=8002, help="the gateway's port")
    parser.add_argument("--mcp-port", type=int, help="the MCP server's port (default --port + 1)")
    parser.add_argument("--state-dir", help="where keys, config and audit go (default: a temp dir)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _exit_on_term)
    mcp_port = args.mcp_port or args.port + 1
    state = Path(args.state_dir or tempfile.mkdtemp(prefix="secmw-mcp-gateway-"))
    state.mkdir(parents=True, exist_ok=True)

    config = gateway_config(args.port, mcp_port)
    jwt = config["auth"]["jwt"]
    issuer = TokenIssuer(issuer=jwt["issuer"], audience=jwt["audience"], kid="dev")
    # What `secmw token --key dev.pem --create-key` and `--jwks > jwks.json` do.
    key = os.open(state / "dev.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(key, "w") as out:
        out.write(issuer.private_pem())
    (state / "jwks.json").write_text(json.dumps(issuer.jwks()), encoding="utf-8")
    (state / "gateway.json").write_text(json.dumps(config, indent=2), encoding="utf-8")

    # The credential only the gateway holds: it sends it, the server demands it.
    service_token = secrets.token_urlsafe(32)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server_env = {**env, "MCP_SERVER_TOKEN": service_token}
    gateway_env = {**env, "FILES_MCP_AUTHORIZATION": f"Bearer {service_token}"}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        server = [sys.executable, str(HERE / "server.py"), "--port", str(mcp_port)]
        processes.append(subprocess.Popen(server, env=server_env))  # noqa: S603 - fixed argv
        wait_for(f"http://127.0.0.1:{mcp_port}/mcp", processes)
        # = secmw gateway --config gateway.json, run in the state directory
        gateway = [sys.executable, "-m", "secmw", "gateway", "--config", "gateway.json"]
        processes.insert(0, subprocess.Popen(gateway, cwd=state, env=gateway_env))  # noqa: S603 - fixed argv
        base = f"http://127.0.0.1:{args.port}"
        wait_for(f"{base}/healthz", processes)

        now = int(time.time())
        user = issuer.mint("alice", scopes=["tools:call"], expires_in=3600)
        mfa = issuer.mint(
            "alice", scopes=["tools:call"], acr="urn:example:mfa", claims={"auth_time": now}
        )
        print(f"user token: {user}")
        print(f"mfa token: {mfa}")
        print(f"state directory: {state}")
        print(
            f"more tokens: secmw token --key {state / 'dev.pem'} --kid dev"
            f" --issuer {jwt['issuer']} --audience {jwt['audience']} --scope tools:call"
        )
        print(f"audit trail: secmw audit tail {state / 'audit.jsonl'}")
        print(f"ready: MCP endpoint {base}/mcp (Ctrl-C stops)", flush=True)
        while all(process.poll() is None for process in processes):
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        stop(processes)
    return 1  # a process died on its own


if __name__ == "__main__":
    sys.exit(main())
