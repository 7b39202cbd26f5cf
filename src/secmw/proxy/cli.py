"""``secmw gateway --config FILE`` and ``secmw demo --gateway``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from secmw._serving import UVICORN_OPTIONS, port_number, serve
from secmw.errors import ConfigError, ConfigIssue
from secmw.proxy.config import GatewayConfig


def register(commands: Any) -> None:
    """Add ``gateway`` to the ``secmw`` subcommands and ``--gateway`` to ``demo``."""
    gateway = commands.add_parser(
        "gateway", help="run the security gateway in front of the configured upstreams"
    )
    gateway.add_argument("--config", required=True, help="the configuration file (.toml/.json)")
    gateway.add_argument("--host", help="address to bind (default: gateway.listen)")
    gateway.add_argument("--port", type=port_number, help="port to bind (default: gateway.listen)")
    gateway.set_defaults(handler=run_gateway)
    demo = commands.choices.get("demo")
    if demo is not None:
        demo.add_argument(
            "--gateway",
            action="store_true",
            help="run the gateway in front of an embedded upstream",
        )
        demo.add_argument(
            "--upstream-port",
            type=port_number,
            help="the embedded upstream's port (default --port + 1)",
        )
        plain = demo.get_default("handler")

        def dispatch(args: argparse.Namespace) -> int:
            if args.gateway:
                try:
                    from secmw.proxy.demo import run_demo  # noqa: PLC0415 - optional deps
                except ImportError:
                    print(
                        "secmw demo --gateway needs httpx and uvicorn:"
                        " pip install 'secmw[gateway]'",
                        file=sys.stderr,
                    )
                    return 1
                return run_demo(args)
            code: int = plain(args)
            return code

        demo.set_defaults(handler=dispatch)


def gateway_issues(gateway: GatewayConfig) -> list[ConfigIssue]:
    """``check-config`` for the ``gateway`` section: targets, allow-list, credentials.

    Building it needs httpx (the ``gateway`` extra); without it the section can be
    neither checked nor run, which is an issue too.
    """
    try:
        from secmw.proxy.build import build_proxy  # noqa: PLC0415 - needs httpx
    except ImportError:
        return [
            ConfigIssue(
                "gateway",
                "cannot be checked (or run) without httpx: pip install 'secmw[gateway]'",
            )
        ]
    try:
        build_proxy(gateway)
    except ConfigError as exc:
        return [ConfigIssue(f"gateway.{issue.key}", issue.message) for issue in exc.issues]
    return []


def run_gateway(args: argparse.Namespace) -> int:
    """Load the configuration, build the gateway and serve it with uvicorn."""
    try:
        import uvicorn  # noqa: PLC0415 - optional dependency

        from secmw.proxy.build import build_gateway  # noqa: PLC0415 - needs httpx
    except ImportError:
        print(
            "secmw gateway needs httpx and uvicorn: pip install 'secmw[gateway]'", file=sys.stderr
        )
        return 1
    from secmw.config import load_config  # noqa: PLC0415 - keeps the CLI start fast

    try:
        config = load_config(args.config)
        gateway = build_gateway(config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    assert config.gateway is not None  # build_gateway refuses a config without it
    host, _, port = config.gateway.listen.rpartition(":")
    host = args.host or host
    port_number = args.port if args.port is not None else int(port)
    print(f"secmw gateway: listening on http://{host}:{port_number}", flush=True)
    if gateway.pipeline.fail_open:
        print(
            f"warning: fail-open settings on: {', '.join(gateway.pipeline.fail_open)}",
            file=sys.stderr,
        )
    code = serve(
        lambda: uvicorn.run(
            gateway,
            host=host,
            port=port_number,
            server_header=False,  # do not advertise the server software
            access_log=False,  # the audit line records every request already
            **UVICORN_OPTIONS,
        ),
        f"{host}:{port_number}",
    )
    if code == 0:
        print("secmw gateway: stopped", flush=True)
    return code


__all__ = ["gateway_issues", "register", "run_gateway"]
