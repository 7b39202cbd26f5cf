"""Start the fake LLM API and the secmw gateway in front of it.

    python examples/llm_gateway/run.py [--port 8004] [--upstream-port 8005] [--state-dir DIR]

Creates two API keys with ``secmw apikey create`` (a paid and a trial plan) and
gateway.json (gateway.toml with the chosen ports) in the state directory, starts
upstream.py on 127.0.0.1, then ``secmw gateway --config gateway.json`` there, and
prints the keys and a curl line. Ctrl-C stops both.
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

HERE = Path(__file__).resolve().parent


def gateway_config(port: int, upstream_port: int) -> dict[str, Any]:
    """gateway.toml with the gateway on ``port`` and the fake API on ``upstream_port``."""
    config = tomllib.loads((HERE / "gateway.toml").read_text(encoding="utf-8"))
    upstream = f"http://127.0.0.1:{upstream_port}"
    config["gateway"]["listen"] = f"127.0.0.1:{port}"
    config["gateway"]["egress"]["allow"] = [upstream]
    config["gateway"]["upstreams"]["llm"]["targets"] = [upstream]
    return config


def create_key(state: Path, subject: str, plan: str | None) -> str:
    """``secmw apikey create``: the key is printed once on stdout, stored hashed."""
    command = [sys.executable, "-m", "secmw", "apikey", "create", "--store", "api-keys.json"]
    command += ["--subject", subject, "--scope", "chat"]
    command += ["--tier", plan] if plan else []
    done = subprocess.run(command, cwd=state, capture_output=True, text=True, check=True)  # noqa: S603 - fixed argv
    return done.stdout.strip()


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
    parser = argparse.ArgumentParser(description="secmw example: an LLM API gateway")
    parser.add_argument("--port", type=int, default=8004, help="the gateway's port")
    parser.add_argument("--upstream-port", type=int, help="the fake API's port (default +1)")
    parser.add_argument("--state-dir", help="where keys, config and audit go (default: a temp dir)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _exit_on_term)
    upstream_port = args.upstream_port or args.port + 1
    state = Path(args.state_dir or tempfile.mkdtemp(prefix="secmw-llm-gateway-"))
    state.mkdir(parents=True, exist_ok=True)
    (state / "gateway.json").write_text(
        json.dumps(gateway_config(args.port, upstream_port), indent=2), encoding="utf-8"
    )
    paid = create_key(state, "chat-app", "paid")
    trial = create_key(state, "trial-app", None)

    # The provider key: the fake API demands it, only the gateway holds it.
    provider_key = f"provider-{secrets.token_urlsafe(24)}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    upstream_env = {**env, "LLM_API_KEY": provider_key}
    gateway_env = {**env, "LLM_API_AUTHORIZATION": f"Bearer {provider_key}"}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        upstream = [sys.executable, str(HERE / "upstream.py"), "--port", str(upstream_port)]
        processes.append(subprocess.Popen(upstream, env=upstream_env))  # noqa: S603 - fixed argv
        wait_for(f"http://127.0.0.1:{upstream_port}/v1/models", processes)
        # = secmw gateway --config gateway.json, run in the state directory
        gateway = [sys.executable, "-m", "secmw", "gateway", "--config", "gateway.json"]
        processes.insert(0, subprocess.Popen(gateway, cwd=state, env=gateway_env))  # noqa: S603 - fixed argv
        base = f"http://127.0.0.1:{args.port}"
        wait_for(f"{base}/v1/models", processes)

        print(f"paid key: {paid}")
        print(f"trial key: {trial}")
        print(f"state directory: {state}")
        print(
            f"try: curl -N {base}/v1/chat/completions -H 'Authorization: Bearer {paid}'"
            ' -H \'Content-Type: application/json\' -d \'{"model": "fake-gpt", "stream": true,'
            ' "messages": [{"role": "user", "content": "What is the staging key?"}]}\''
        )
        print(f"audit trail: secmw audit tail {state / 'audit.jsonl'}")
        print(f"ready: OpenAI-compatible API at {base}/v1 (Ctrl-C stops)", flush=True)
        while all(process.poll() is None for process in processes):
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        stop(processes)
    return 1  # a process died on its own


if __name__ == "__main__":
    sys.exit(main())
