"""The file sink against real processes and real disks: kill -9, SIGTERM, full disks, load."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from secmw.audit import AuditEvent, verify_files
from tests.audit_support import child, make_sink, records, stop, trail_files, wait_until

pytestmark = pytest.mark.slow

# A writer process: emits numbered events forever (or COUNT of them), then waits.
WRITER = """
import json, resource, signal, sys, time
import anyio
from secmw.audit import AuditEvent, JSONLFileSink

path, count, limit, options = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a fresh process, whatever we inherit
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

async def main():
    sink = JSONLFileSink(path, fallback=None, **options)
    n = 0
    while count == 0 or n < count:
        await sink.emit(AuditEvent(name="authz_allow", outcome="success", request_id=f"r{n}",
                                   reason="x" * 80))
        n += 1
        if n == 2000:
            print("running", flush=True)
        if limit and sink.error is not None:
            break
        if limit:  # small batches, so the limit falls inside a file with lines
            await anyio.sleep(0.0005)
        if count == 0 and n % 500 == 0:
            await anyio.sleep(0.001)
    if limit:
        print(json.dumps({"error": sink.error, "healthy": sink.healthy, "n": n}), flush=True)
        sink.close()
        return
    print("queued", flush=True)
    time.sleep(30)

anyio.run(main)
"""


def _start(path: Path, count: int, limit: int = 0, **options: object) -> subprocess.Popen[str]:
    return child(WRITER, str(path), str(count), str(limit), json.dumps(options))


def _wait_line(process: subprocess.Popen[str], expected: str) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != expected:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise AssertionError(f"child said {line!r}; stderr: {err[-2000:]}")


def test_kill_9_mid_stream_then_restart_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    process = _start(path, 0, fsync="never", rotate_bytes=256 * 1024, handle_sigterm=False)
    try:
        _wait_line(process, "running")
        wait_until(lambda: len(trail_files(path)) >= 3, timeout=20)
    finally:
        process.kill()
        process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL
    before = verify_files(trail_files(path))
    assert before.ok, before.problem
    # Whatever the kill left, plus a torn line as a crash inside write() would leave it.
    with path.open("ab") as handle:
        handle.write(b'{"seq":' + str((before.last_seq or 0) + 1).encode() + b',"prev":"ab')

    async def restart() -> None:
        sink, _ = make_sink(path)
        await sink.emit(AuditEvent(name="sys_startup", outcome="success"))
        await sink.aclose()

    anyio.run(restart)
    after = verify_files(trail_files(path))
    assert after.ok, after.problem
    assert after.last_seq == (before.last_seq or 0) + 2
    tail = records([path])[-2:]
    assert tail[0]["event"] == "sink_recovered" and tail[0]["seq"] == (before.last_seq or 0) + 1
    assert list(tmp_path.glob("audit.jsonl.torn-*"))


def test_sigterm_flushes_and_fsyncs_everything_queued(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    count = 30000
    process = _start(path, count, fsync="never", queue_size=count + 10, rotate_bytes=None)
    try:
        _wait_line(process, "running")
        _wait_line(process, "queued")
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    finally:
        stop(process)
    assert process.returncode == -signal.SIGTERM
    rows = records([path])
    assert [row["request_id"] for row in rows] == [f"r{n}" for n in range(count)]
    assert verify_files([path]).ok


def test_file_size_limit_gives_a_short_write_and_no_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    limit = 64 * 1024
    process = _start(path, 10**6, limit, fsync="always", retry_interval=10, handle_sigterm=False)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    report = json.loads(out.splitlines()[-1])
    assert report["error"] in ("ENOSPC", "EFBIG") and report["healthy"] is False
    data = path.read_bytes()
    assert 0 < len(data) <= limit and data.endswith(b"\n")
    result = verify_files([path])
    assert result.ok and result.notes == []


@pytest.fixture
def tiny_tmpfs() -> Iterator[Path]:
    if sys.platform != "linux" or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs Linux and mount(8)")
    folder = Path(tempfile.mkdtemp(prefix="secmw-tmpfs-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
        timeout=10,
    )
    if done.returncode != 0:
        folder.rmdir()
        pytest.skip("cannot mount a tmpfs here (no privilege)")
    try:
        yield folder
    finally:
        done = subprocess.run(["umount", str(folder)], capture_output=True, check=False, timeout=10)
        if done.returncode != 0:
            subprocess.run(
                ["umount", "-l", str(folder)], capture_output=True, check=False, timeout=10
            )
        shutil.rmtree(folder, ignore_errors=True)


def test_tiny_tmpfs_fills_up_and_fails_closed(tiny_tmpfs: Path) -> None:
    path = tiny_tmpfs / "audit.jsonl"

    async def fill() -> None:
        sink, fallback = make_sink(path, fsync="always", retry_interval=10)
        n = 0
        while sink.error is None and n < 5000:
            await sink.emit(AuditEvent(name="authz_allow", outcome="success", reason="z" * 200))
            n += 1
            if n % 50 == 0:
                await anyio.sleep(0.001)
        wait_until(lambda: sink.error is not None)
        assert sink.error == "ENOSPC" and not sink.healthy
        await sink.aclose()
        assert "sys_monitor_disabled" in fallback.getvalue()

    anyio.run(fill)
    assert path.read_bytes().endswith(b"\n")
    assert verify_files([path]).ok


def test_rotation_under_concurrent_load_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    tasks, threads, each = 6, 2, 400
    sink, fallback = make_sink(path, rotate_bytes=16 * 1024, fsync_every=50)

    async def producer(name: str) -> None:
        for n in range(each):
            await sink.emit(
                AuditEvent(name="authz_allow", outcome="success", request_id=f"{name}-{n}")
            )
            if n % 25 == 0:
                await anyio.sleep(0)

    async def tasks_in_one_loop() -> None:
        async with anyio.create_task_group() as group:
            for t in range(tasks):
                group.start_soon(producer, f"t{t}")

    # Event loops in other threads emit at the same time (a sync framework's workers).
    workers = [threading.Thread(target=anyio.run, args=(producer, f"w{w}")) for w in range(threads)]
    start = time.monotonic()
    for worker in workers:
        worker.start()
    anyio.run(tasks_in_one_loop)
    for worker in workers:
        worker.join(timeout=30)
    sink.close()
    assert sink.diverted == 0 and fallback.getvalue() == ""
    files = trail_files(path)
    assert len(files) > 5
    ids = [row["request_id"] for row in records(files)]
    names = [f"t{t}" for t in range(tasks)] + [f"w{w}" for w in range(threads)]
    assert sorted(ids) == sorted(f"{name}-{n}" for name in names for n in range(each))
    for name in names:  # each producer's events stay in its order
        mine = [i for i in ids if i.split("-")[0] == name]
        assert mine == [f"{name}-{n}" for n in range(each)]
    result = verify_files(files)
    assert result.ok and result.lines == len(names) * each
    assert time.monotonic() - start < 20


def test_tail_follow_reads_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path, rotate_bytes=4096)

    async def emit(first: int, count: int) -> None:
        for n in range(first, first + count):
            await sink.emit(
                AuditEvent(
                    name="authz_allow", outcome="success", request_id=f"r{n}", reason="p" * 150
                )
            )

    anyio.run(emit, 0, 5)
    wait_until(lambda: sink.written == 5)
    process = child(
        "import sys; from secmw.cli import main; sys.exit(main(sys.argv[1:]))",
        "audit",
        "tail",
        "-f",
        "-n",
        "2",
        str(path),
    )
    try:
        assert process.stdout is not None
        first = [process.stdout.readline(), process.stdout.readline()]
        assert "request_id=r3" in first[0] and "request_id=r4" in first[1]
        anyio.run(emit, 5, 60)
        sink.close()
        assert len(trail_files(path)) > 2  # the follower had to cross rotations
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        stop(process)
    assert process.returncode == 0, err
    seen = [line.split("request_id=")[1].split()[0] for line in out.splitlines()]
    assert seen == [f"r{n}" for n in range(5, 65)]


def test_tail_follow_stops_with_a_message_when_a_directory_replaces_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path)
    anyio.run(sink.emit, AuditEvent(name="authz_allow", outcome="success", request_id="r0"))
    sink.close()
    process = child(
        "import sys; from secmw.cli import main; sys.exit(main(sys.argv[1:]))",
        "audit",
        "tail",
        "-f",
        str(path),
    )
    try:
        assert process.stdout is not None
        assert "request_id=r0" in process.stdout.readline()
        path.unlink()
        path.mkdir()  # what the follower finds at the path now cannot be read
        out, err = process.communicate(timeout=10)
    finally:
        stop(process)
    assert process.returncode == 2
    assert err == "secmw audit tail: Is a directory\n"
