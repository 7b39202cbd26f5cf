"""Throughput under uvicorn: the head-to-head app bare and behind the full secmw chain.

Each variant (``benchmarks/h2h_app.py``: the same Starlette app, the full secmw
chain around it, optionally the peer stack) is served by its own uvicorn process
(one worker) on 127.0.0.1 and driven by ``wrk`` from a separate process with
keep-alive connections, in interleaved rounds. Reported: requests/s per round and
their median, the share of the bare app's throughput the protected app keeps, and
wrk's latency percentiles. With two or more cores the server runs on CPU 0 and
wrk on CPU 1 (``taskset``), so they do not take turns on one core.

    python benchmarks/throughput.py [--duration 8] [--rounds 3] [--connections 16] [--peer]
                                    [--http auto|h11|httptools] [--loop auto|asyncio|uvloop]

uvicorn's ``auto`` (the default here too) uses httptools and uvloop when they are
installed (the ``gateway`` extra installs both); ``--http h11 --loop asyncio`` runs
the pure-Python server stack.

``wrk`` comes from Debian's package; when it is missing and this runs as root, the
script installs it with apt-get (otherwise it says how). Bounded: every wrk run
has a duration and a timeout, servers are always stopped, only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import h2h_app as h2h

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.85


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing Debian's package with apt-get", flush=True)
        quiet = {"stdout": subprocess.DEVNULL, "stdin": subprocess.DEVNULL, "timeout": 600}
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, env=env, check=False, **quiet).returncode:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, **quiet)
            subprocess.run(install, env=env, check=False, **quiet)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit("wrk is needed: apt-get install wrk (Debian/Ubuntu) or your system's package")


def pinned(cpu: int) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_stack(http: str, loop: str) -> tuple[str, str]:
    """What uvicorn will use: its ``auto`` picks httptools and uvloop when installed."""
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    if loop == "auto":
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return http, loop


def serve(
    mode: str, port: int, key_path: Path, directory: Path, stack: tuple[str, str]
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "H2H_MODE": mode,
        "H2H_KEY": str(key_path),
        "H2H_DIR": str(directory),
        "PYTHONPATH": str(ROOT),
    }
    command = [
        *pinned(0), sys.executable, "-W", "ignore::DeprecationWarning", "-m", "uvicorn",
        "benchmarks.h2h_app:create", "--factory", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "error", "--no-access-log", "--http", stack[0], "--loop", stack[1],
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


def wait_ready(mode: str, process: subprocess.Popen[bytes], port: int, token: str) -> int:
    """Wait for the server's first answer to a valid request; a protected one must redact."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{h2h.PATH}", headers={"authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                body = response.read()
                # The bare app and secmw's stages before redaction leave the secret in.
                redacts = mode != "bare" and (not mode.startswith("secmw:") or "redact" in mode)
                if h2h.SECRET.encode() in body and redacts:
                    sys.exit(f"{mode}: the secret was not redacted")
                return int(response.status)
        except OSError:
            time.sleep(0.2)
    sys.exit(f"the server on port {port} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process (every thread), from /proc; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    wrk: str, port: int, token: str, args: argparse.Namespace, pid: int
) -> dict[str, float]:
    command = [
        *pinned(1), wrk, "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
        "--timeout", "5s", "-H", f"Authorization: Bearer {token}",
        f"http://127.0.0.1:{port}{h2h.PATH}",
    ]  # fmt: skip
    cpu_before = cpu_seconds(pid)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=args.duration + 30, check=True
    )
    cpu_after = cpu_seconds(pid)
    out = done.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        sys.exit(f"cannot read wrk's output:\n{out}")
    result = {"rps": float(rate.group(1)), "non2xx": 0.0, "errors": 0.0}
    total = re.search(r"(\d+) requests in", out)
    if cpu_before is not None and cpu_after is not None and total and int(total.group(1)):
        # The server's CPU per answered request (its audit writer thread included).
        result["cpu_us"] = (cpu_after - cpu_before) / int(total.group(1)) * 1e6
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        result["non2xx"] = float(bad.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        result["errors"] = float(sum(int(n) for n in socket_errors.groups()))
    for label in ("50", "99"):
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if found:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
            result[f"p{label}_ms"] = float(found.group(1)) * scale
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--peer", action="store_true", help="also the peer stack (PyJWT)")
    parser.add_argument(
        "--breakdown", action="store_true", help="also secmw with its first stages only"
    )
    parser.add_argument(
        "--http", choices=("auto", "h11", "httptools"), default="auto", help="uvicorn's parser"
    )
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="uvicorn's loop"
    )
    parser.add_argument(
        "--audit-batch-ms", type=int, help="secmw's audit.file.batch_interval_ms (else default)"
    )
    args = parser.parse_args()
    if args.audit_batch_ms is not None:
        os.environ["H2H_AUDIT_BATCH_MS"] = str(args.audit_batch_ms)  # read by h2h_app.create
    wrk = ensure_wrk()
    partial = ["secmw:" + "+".join(h2h.STAGES[:count]) for count in range(1, len(h2h.STAGES))]
    modes = [
        "bare",
        *(partial if args.breakdown else []),
        "secmw",
        *(["peer-pyjwt"] if args.peer else []),
    ]
    directory = Path(tempfile.mkdtemp(prefix="secmw-throughput-"))
    issuer = h2h.make_issuer()
    key_path = directory / "issuer.pem"
    key_path.write_text(issuer.private_pem(), encoding="utf-8")
    token = h2h.mint(issuer, expires_in=3600 + args.rounds * len(modes) * args.duration)
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    stack = server_stack(args.http, args.loop)
    try:
        for mode in modes:
            port = free_port()
            servers[mode] = (serve(mode, port, key_path, directory, stack), port)
        for mode, (process, port) in servers.items():
            status = wait_ready(mode, process, port, token)
            if status != 200:
                sys.exit(f"{mode}: a valid request got {status}")
        wrk_version = subprocess.run(
            [wrk, "--version"], capture_output=True, text=True, check=False, timeout=10
        ).stdout.split(" Copyright")[0]
        print(
            f"secmw throughput under uvicorn: Python {platform.python_version()}, "
            f"uvicorn (1 worker, {stack[0]}, {stack[1]}), {wrk_version.strip()}, "
            f"-t1 -c{args.connections}, "
            f"{args.duration} s x {args.rounds} rounds, GET {h2h.PATH} ({len(h2h.BODY)} B JSON)"
            + (
                f", audit batch_interval_ms {args.audit_batch_ms}"
                if args.audit_batch_ms is not None
                else ""
            )
        )
        for turn in range(args.rounds):
            for mode in modes[turn % len(modes) :] + modes[: turn % len(modes)]:
                process, port = servers[mode]
                results[mode].append(run_wrk(wrk, port, token, args, process.pid))
    finally:
        for process, _port in servers.values():
            stop(process)
        shutil.rmtree(directory, ignore_errors=True)
    width = max(12, *(len(mode) for mode in modes))
    header = (
        f"{'variant':{width}} {'req/s (each round)':34} {'median':>9} {'p50 ms':>7} {'p99 ms':>7}"
    )
    print(f"{header} {'CPU us/req':>10} {'bad':>5}")
    medians: dict[str, float] = {}
    cpu_median: dict[str, float] = {}
    for mode, runs in results.items():
        rates = [run["rps"] for run in runs]
        medians[mode] = statistics.median(rates)
        p50 = statistics.median(run.get("p50_ms", 0.0) for run in runs)
        p99 = statistics.median(run.get("p99_ms", 0.0) for run in runs)
        bad = sum(run["non2xx"] + run["errors"] for run in runs)
        each = " ".join(f"{rate:.0f}" for rate in rates)
        cpus = [run["cpu_us"] for run in runs if "cpu_us" in run]
        if cpus:
            cpu_median[mode] = statistics.median(cpus)
        cpu = f"{cpu_median[mode]:10.1f}" if cpus else f"{'n/a':>10}"
        print(
            f"{mode:{width}} {each:34} {medians[mode]:9.0f} {p50:7.2f} {p99:7.2f} {cpu} {bad:5.0f}"
        )
    ratios = [p["rps"] / b["rps"] for p, b in zip(results["secmw"], results["bare"], strict=True)]
    ratio = medians["secmw"] / medians["bare"]
    verdict = "met" if ratio >= TARGET else f"missed by {(TARGET - ratio) * 100:.1f} points"
    print(
        f"\nsecmw keeps {ratio:.1%} of the bare app's throughput (per round: "
        + ", ".join(f"{r:.1%}" for r in ratios)
        + f"); target >= {TARGET:.0%}: {verdict}"
    )
    if "bare" in cpu_median and "secmw" in cpu_median:
        budget = cpu_median["bare"] * (1 / TARGET - 1)
        print(
            f"server CPU per request: {cpu_median['secmw']:.0f} us with secmw, "
            f"{cpu_median['bare']:.0f} us bare; keeping {TARGET:.0%} would leave the chain "
            f"about {budget:.0f} us"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
