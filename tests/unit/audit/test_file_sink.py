"""The JSONL file sink: chain, rotation, fsync policies, recovery and failure policies."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secmw.audit import AuditEvent, CheckpointSigner, JSONLFileSink, _files, _writer, verify_files
from secmw.audit.hashchain import GENESIS, line_hash
from secmw.errors import ComponentError
from tests.audit_support import fallback_records, make_sink, records, trail_files, wait_until

pytestmark = pytest.mark.anyio


def event(n: int, **fields: Any) -> AuditEvent:
    return AuditEvent(name="authz_allow", outcome="success", request_id=f"r{n}", **fields)


async def test_lines_are_chained_from_genesis(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path)
    for n in range(5):
        await sink.emit(event(n, path="/a"))
    await sink.aclose()
    raw = path.read_bytes().splitlines()
    rows = [json.loads(line) for line in raw]
    assert [row["seq"] for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["prev"] == GENESIS
    assert all(rows[i + 1]["prev"] == line_hash(raw[i]) for i in range(4))
    assert [row["request_id"] for row in rows] == [f"r{n}" for n in range(5)]
    assert list(rows[0])[:3] == ["seq", "prev", "time"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert verify_files([path]).ok


async def test_chain_continues_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for round_ in range(3):
        sink, _ = make_sink(path)
        await sink.emit(event(round_))
        await sink.aclose()
    assert [row["seq"] for row in records([path])] == [1, 2, 3]
    assert verify_files([path]).ok


async def test_size_rotation_keeps_the_chain_across_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path, rotate_bytes=4096)
    for n in range(100):
        await sink.emit(event(n, reason="x" * 100))
    await sink.aclose()
    files = trail_files(path)
    assert len(files) > 3
    assert all(f.stat().st_size < 4096 + 400 for f in files)
    assert [row["request_id"] for row in records(files)] == [f"r{n}" for n in range(100)]
    result = verify_files(reversed(files))  # any order: sorted by first seq
    assert result.ok and result.lines == 100 and result.last_seq == 100


async def test_restart_with_an_empty_active_file_continues_from_the_rotated_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path, rotate_bytes=4096)
    for n in range(30):
        await sink.emit(event(n, reason="y" * 200))
    await sink.aclose()
    path.rename(tmp_path / "audit.jsonl.999999999999")
    sink, _ = make_sink(path)
    await sink.emit(event(30))
    await sink.aclose()
    assert records([path])[0]["seq"] == 31
    assert verify_files(trail_files(path)).ok


async def test_time_rotation_and_keep(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path, rotate_seconds=0.05, keep=2, rotate_bytes=None)
    for n in range(4):
        await sink.emit(event(n))
        wait_until(lambda n=n: sink.written == n + 1)
        await anyio.sleep(0.12)
    await sink.aclose()
    rotated = trail_files(path)[:-1] if path.exists() else trail_files(path)
    assert 1 <= len(rotated) <= 2
    result = verify_files(trail_files(path), allow_missing_head=True)
    assert result.ok and result.last_seq == 4
    assert result.first_seq is not None and result.first_seq > 1  # oldest pruned


@pytest.mark.parametrize(
    ("policy", "options", "expected"),
    [
        # file + directory at close
        pytest.param("never", {}, 1 + 1, id="never-only-at-close"),
        # one per write; nothing left at close but the directory
        pytest.param("always", {}, 6 + 1, id="always-per-write"),
        pytest.param("batch", {"fsync_every": 3, "fsync_interval": 60}, 2 + 1, id="every-3"),
    ],
)
async def test_fsync_policies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, options: Any, expected: int
) -> None:
    calls: list[int] = []
    real = _writer._sync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(_writer, "_sync", counting)
    sink, _ = make_sink(tmp_path / "audit.jsonl", fsync=policy, **options)
    for n in range(6):
        await sink.emit(event(n))
        wait_until(lambda n=n: sink.written == n + 1)
    await sink.aclose()
    assert len(calls) == expected


async def test_fsync_interval_syncs_without_more_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(_writer, "_sync", calls.append)
    sink, _ = make_sink(tmp_path / "audit.jsonl", fsync_every=10**6, fsync_interval=0.02)
    await sink.emit(event(1))
    wait_until(lambda: len(calls) == 1)
    await sink.aclose()


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"fsync_interval": 1e10}, id="fsync-interval"),
        pytest.param({"rotate_seconds": 1e10}, id="rotate-seconds"),
    ],
)
async def test_intervals_of_centuries_do_not_crash_the_writer(
    tmp_path: Path, options: dict[str, float]
) -> None:
    # A wait that long overflowed the lock's timeout: the writer died, and every
    # request got 503 for good although check-config had accepted the values.
    sink, fallback = make_sink(tmp_path / "audit.jsonl", **options)
    for n in range(2):
        await sink.emit(event(n))
        wait_until(lambda n=n: sink.written == n + 1)
        await anyio.sleep(0.3)  # past the default fsync interval: the long wait comes next
    assert sink.healthy and sink.error is None
    await sink.aclose()
    assert fallback.getvalue() == ""
    assert verify_files([tmp_path / "audit.jsonl"]).lines == 2


async def test_torn_last_line_is_moved_aside_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path)
    for n in range(3):
        await sink.emit(event(n))
    await sink.aclose()
    torn = b'{"seq":4,"prev":"abc","time":"2026-'
    with path.open("ab") as handle:
        handle.write(torn)
    sink, _ = make_sink(path)
    await sink.emit(event(3))
    await sink.aclose()
    rows = records([path])
    assert [row["event"] for row in rows] == ["authz_allow"] * 3 + ["sink_recovered", "authz_allow"]
    recovered = rows[3]
    assert recovered["seq"] == 4 and recovered["details"]["torn_bytes"] == len(torn)
    aside = tmp_path / recovered["details"]["moved_to"]
    assert aside.read_bytes() == torn
    assert verify_files([path]).ok


async def test_a_file_that_is_not_a_trail_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("hello\nworld\n")
    with pytest.raises(ComponentError, match="cannot continue"):
        JSONLFileSink(path, handle_sigterm=False)
    with pytest.raises(ComponentError, match="cannot open"):
        JSONLFileSink(tmp_path / "missing" / "a.jsonl", handle_sigterm=False)


@pytest.mark.parametrize(
    "last",
    [
        b'{"seq":"41","prev":"' + b"0" * 64 + b'"}',
        b'{"seq":41.9,"prev":"' + b"0" * 64 + b'"}',
        b'{"seq":true,"prev":"' + b"0" * 64 + b'"}',
        b'{"seq":1e400,"prev":"' + b"0" * 64 + b'"}',
        b'{"seq":41}',
        b'{"seq":41,"prev":"not a hash"}',
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b"[41]",
    ],
)
async def test_a_last_line_that_is_not_a_chain_line_is_refused(tmp_path: Path, last: bytes) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(last + b"\n")
    with pytest.raises(ComponentError, match="cannot continue"):
        JSONLFileSink(path, handle_sigterm=False)


async def test_signed_checkpoints_every_n_and_at_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    key = Ed25519PrivateKey.generate()
    sink, _ = make_sink(path, signer=CheckpointSigner(key), checkpoint_every=4, rotate_bytes=4096)
    for n in range(10):
        await sink.emit(event(n))
    await sink.aclose()
    rows = records(trail_files(path))
    assert [row["seq"] for row in rows if row["event"] == "audit_checkpoint"] == [5, 10, 13]
    result = verify_files(trail_files(path), public_key=key.public_key())
    assert result.ok and result.signed_checkpoints == 3 and result.unsigned_tail == 0
    other = Ed25519PrivateKey.generate().public_key()
    bad = verify_files(trail_files(path), public_key=other)
    assert not bad.ok and bad.bad_seq == 5


async def test_processors_run_in_the_emitters_context(tmp_path: Path) -> None:
    import structlog

    def tag(logger: Any, method: str, data: Any) -> Any:
        data["tagged"] = method
        return data

    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path, processors=[structlog.contextvars.merge_contextvars, tag])
    structlog.contextvars.bind_contextvars(request_id="ctx-1", job="nightly")
    try:
        await sink.emit(AuditEvent(name="sys_error", outcome="failure", severity="error"))
    finally:
        structlog.contextvars.clear_contextvars()
    await sink.aclose()
    row = records([path])[0]
    assert row["request_id"] == "ctx-1" and row["job"] == "nightly" and row["tagged"] == "error"


async def test_a_failing_processor_does_not_lose_the_event(tmp_path: Path) -> None:
    def broken(logger: Any, method: str, data: Any) -> Any:
        raise RuntimeError("bug")

    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path, processors=[broken])
    await sink.emit(event(1))
    await sink.aclose()
    assert records([path])[0]["request_id"] == "r1"


# -- failure policies -------------------------------------------------------------------


def _failing_writes(monkeypatch: pytest.MonkeyPatch, failures: int, *, short: bool) -> list[int]:
    """Make the next ``failures`` writes fail (ENOSPC) or write half; then write normally."""
    seen: list[int] = []
    real = _writer._write

    def write(fd: int, data: bytes) -> int:
        seen.append(len(data))
        if len(seen) <= failures:
            if short:
                return real(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(_writer, "_write", write)
    return seen


@pytest.mark.parametrize("short", [False, True], ids=["enospc", "short-write"])
async def test_write_error_fails_closed_then_recovers_without_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short: bool
) -> None:
    path = tmp_path / "audit.jsonl"
    _failing_writes(monkeypatch, 2, short=short)
    sink, fallback = make_sink(path, retry_interval=0.05)
    await sink.emit(event(1))
    wait_until(lambda: sink.error is not None)
    assert sink.error == "ENOSPC"
    assert not sink.healthy
    assert path.read_bytes() == b""  # the partial bytes were cut off
    await sink.emit(event(2))  # refused: goes to the fallback, counted
    assert sink.diverted == 1
    wait_until(lambda: sink.error is None, timeout=3)
    assert sink.healthy
    await sink.emit(event(3))
    await sink.aclose()
    rows = records([path])
    assert [row["event"] for row in rows] == [
        "authz_allow",
        "sys_monitor_enabled",
        "authz_allow",
    ]
    assert rows[1]["details"] == {
        "sink": "file",
        "error": "ENOSPC",
        "permanent": False,
        "diverted": 1,
    }
    alerts = fallback_records(fallback)
    assert [a["event"] for a in alerts] == [
        "sys_monitor_disabled",
        "authz_allow",
        "sys_monitor_enabled",
    ]
    assert alerts[1]["audit_diverted"] is True and alerts[1]["request_id"] == "r2"
    assert verify_files([path]).ok


async def test_fsync_error_fails_the_sink_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def broken(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(_writer, "_sync", broken)
    sink, fallback = make_sink(tmp_path / "audit.jsonl", fsync="always", retry_interval=0.01)
    await sink.emit(event(1))
    wait_until(lambda: sink.error is not None)
    assert sink.error == "fsync failed: EIO"
    await sink.emit(event(2))
    time.sleep(0.05)
    assert len(calls) == 1  # never retried
    assert not sink.healthy
    await sink.aclose()
    assert not sink.healthy
    await sink.startup()  # a pipeline started again (lifespan restart) reopens nothing
    assert not sink.healthy
    alerts = fallback_records(fallback)
    assert alerts[0]["event"] == "sys_monitor_disabled"
    assert alerts[0]["details"]["permanent"] is True
    assert alerts[1]["request_id"] == "r2" and alerts[1]["audit_diverted"]


async def test_dev_full_fail_open_counts_and_alerts_but_stays_healthy(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    sink, fallback = make_sink(Path("/dev/full"), on_failure="fail_open", retry_interval=10)
    await sink.emit(event(1))
    wait_until(lambda: sink.error is not None)
    assert sink.healthy
    for n in range(2, 5):
        await sink.emit(event(n))
    assert sink.diverted == 3
    await sink.aclose()
    names = [row["event"] for row in fallback_records(fallback)]
    # The accepted first event is handed to the fallback at close, chained line and all.
    assert names.count("sys_monitor_disabled") == 1
    assert names[-1] == "authz_allow"
    assert sink.diverted == 4


async def test_queue_full_fails_closed_or_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered: list[int] = []
    release: list[bool] = []
    real = _writer._write

    def stuck(fd: int, data: bytes) -> int:
        entered.append(fd)
        while not release:
            time.sleep(0.001)
        return real(fd, data)

    monkeypatch.setattr(_writer, "_write", stuck)
    closed, fallback = make_sink(tmp_path / "a.jsonl", queue_size=2)
    blocking, _ = make_sink(
        tmp_path / "b.jsonl", queue_size=2, on_failure="block", block_timeout=0.05
    )
    for count, sink in enumerate((closed, blocking), start=1):
        await sink.emit(event(0))
        wait_until(lambda count=count: len(entered) == count)  # the writer holds event 0
        for n in range(1, 4):  # two fit in the queue, the third does not
            await sink.emit(event(n))
        assert sink.diverted == 1
    assert not closed.healthy
    assert blocking.healthy  # block: a full queue is back-pressure, not a refusal
    assert fallback_records(fallback)[0]["reason"] == "audit queue full"
    release.append(True)
    for sink in (closed, blocking):
        await sink.aclose()
        assert sink.written == 3 and sink.diverted == 1


async def test_block_waits_for_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entered: list[int] = []
    release: list[bool] = []
    real = _writer._write

    def stuck(fd: int, data: bytes) -> int:
        entered.append(fd)
        while not release:
            time.sleep(0.001)
        return real(fd, data)

    monkeypatch.setattr(_writer, "_write", stuck)
    sink, _ = make_sink(tmp_path / "a.jsonl", queue_size=1, on_failure="block", block_timeout=5)
    await sink.emit(event(0))
    wait_until(lambda: bool(entered))
    await sink.emit(event(1))
    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(sink.emit, event(2))
        await anyio.sleep(0.05)
        release.append(True)
    assert 0.04 < time.monotonic() - started < 4
    await sink.aclose()
    assert sink.diverted == 0 and sink.written == 3


async def test_emit_after_close_goes_to_the_fallback(tmp_path: Path) -> None:
    sink, fallback = make_sink(tmp_path / "audit.jsonl")
    await sink.aclose()
    await sink.aclose()
    await sink.emit(event(1))
    assert sink.diverted == 1 and not sink.healthy
    assert fallback_records(fallback)[0]["request_id"] == "r1"


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for this one")


async def test_an_event_that_cannot_render_still_leaves_a_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path)
    details = {"x": _Unprintable()}
    await sink.emit(AuditEvent(name="sys_error", outcome="failure", details=details))
    await sink.emit(event(2))
    await sink.aclose()
    rows = records([path])
    assert rows[0]["event"] == "sys_error" and rows[0]["reason"] == "event could not be rendered"
    assert rows[1]["request_id"] == "r2"


async def test_details_are_plain_json_clipped_at_every_depth(tmp_path: Path) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path)
    details = {
        "nan": float("nan"),
        "inf": [float("inf")],
        "nested": {"deep": ["y" * 10_000]},
        "loop": loop,
    }
    await sink.emit(AuditEvent(name="sys_error", outcome="failure", details=details))
    await sink.aclose()
    line = path.read_bytes().splitlines()[0]
    row = json.loads(line, parse_constant=lambda name: pytest.fail(f"bare {name} in the line"))
    assert row["details"]["nan"] == "nan" and row["details"]["inf"] == ["inf"]
    assert len(row["details"]["nested"]["deep"][0]) == 512
    assert len(line) < 4096  # the self-reference is cut, not followed


async def test_a_rotation_that_cannot_open_the_new_file_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    sink, fallback = make_sink(path, rotate_bytes=4096, retry_interval=0.02)
    real_open = _writer.os.open
    failures: list[str] = []

    def flaky_open(name: Any, flags: int, *args: Any) -> int:
        if str(name) == str(path) and flags & os.O_CREAT and len(failures) < 2:
            failures.append(str(name))
            raise OSError(errno.EACCES, "Permission denied")
        return real_open(name, flags, *args)

    monkeypatch.setattr(_writer.os, "open", flaky_open)
    for n in range(30):
        await sink.emit(event(n, reason="r" * 200))
        if sink.error is not None:
            break
    wait_until(lambda: sink.error is None and len(failures) == 2, timeout=5)
    monkeypatch.setattr(_writer.os, "open", real_open)
    await sink.aclose()
    assert "sys_monitor_disabled" in fallback.getvalue()
    result = verify_files(trail_files(path))
    assert result.ok, result.problem
    names = [row["event"] for row in records(trail_files(path))]
    assert "sys_monitor_enabled" in names


async def test_an_event_queued_after_the_writer_stopped_goes_to_the_fallback(
    tmp_path: Path,
) -> None:
    sink, fallback = make_sink(tmp_path / "audit.jsonl")
    sink._writer.stop()
    sink._writer.join()
    await sink.emit(event(1))  # the sink is not closed yet, the writer is gone
    await sink.aclose()
    assert sink.diverted == 1
    assert fallback_records(fallback)[0]["request_id"] == "r1"


def _counted_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many lines each write of the writer carries."""
    writes: list[int] = []
    real = _writer._write

    def write(fd: int, data: bytes) -> int:
        writes.append(data.count(b"\n"))
        return real(fd, data)

    monkeypatch.setattr(_writer, "_write", write)
    return writes


async def test_events_gather_for_batch_interval_then_go_in_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = _counted_writes(monkeypatch)
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path, batch_interval=0.5, fsync="never")
    await sink.emit(event(0))
    # An idle writer takes the first event at once ...
    wait_until(lambda: sink.written == 1)
    started = time.monotonic()
    for n in range(1, 20):
        await sink.emit(event(n))
    # ... then waits out the interval, so the next 19 arrive in a single write.
    wait_until(lambda: sink.written == 20)
    assert time.monotonic() - started >= 0.3
    assert writes == [1, 19]
    closing = time.monotonic()
    await sink.emit(event(20))
    await sink.aclose()  # close does not wait out the interval
    assert time.monotonic() - closing < 0.4
    assert [row["request_id"] for row in records([path])] == [f"r{n}" for n in range(21)]
    assert verify_files([path]).ok


async def test_batch_interval_zero_writes_as_soon_as_queued(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path, batch_interval=0.0, fsync="never")

    def written(count: int) -> Callable[[], bool]:
        return lambda: sink.written == count

    for n in range(3):
        await sink.emit(event(n))
        wait_until(written(n + 1), timeout=2.0)
    await sink.aclose()


async def test_a_backed_up_queue_is_written_without_waiting_out_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = _counted_writes(monkeypatch)
    path = tmp_path / "audit.jsonl"
    total = 3 * _writer._MAX_BATCH + 2
    sink, _ = make_sink(path, batch_interval=1.0, fsync="never")
    await sink.emit(event(0))
    wait_until(lambda: sink.written == 1)
    started = time.monotonic()
    for n in range(1, total):
        await sink.emit(event(n))
    wait_until(lambda: sink.written == total, timeout=10.0)
    # One pause (the one after the first event), not one after every full batch.
    assert time.monotonic() - started < 3.0
    assert writes[:4] == [1, *[_writer._MAX_BATCH] * 3]
    await sink.aclose()
    assert len(records([path])) == total


def test_a_fifo_without_a_reader_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "audit.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ComponentError, match="cannot open"):
        JSONLFileSink(fifo, handle_sigterm=False)


async def _three_on_disk(path: Path, **options: Any) -> tuple[JSONLFileSink, Any]:
    """A sink (fsync always) whose first three events are on disk."""
    sink, fallback = make_sink(path, fsync="always", **options)
    for n in range(3):
        await sink.emit(event(n))
    wait_until(lambda: sink.written == 3)
    return sink, fallback


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_file_deleted_or_moved_away_in_use_is_noticed_and_continued(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "audit.jsonl"
    sink, fallback = await _three_on_disk(path, rotate_bytes=4096)
    if how == "deleted":
        path.unlink()
    else:
        path.rename(tmp_path / "kept.jsonl")
        path.write_bytes(b"")  # a new, empty file at the name (logrotate's "create")
    for n in range(3, 60):
        await sink.emit(event(n, reason="x" * 100))  # enough to rotate again, too
    await sink.aclose()
    rows = records(trail_files(path))
    written = [r["request_id"] for r in rows if r["event"] == "authz_allow"]
    if how == "deleted":
        # Lines written into the deleted file since the last check are written
        # again into the new one: here every event is still on disk, once.
        assert written == [f"r{n}" for n in range(60)]
    else:
        # Renamed away: the first lines stay in the renamed file, the rest follow.
        kept = records([tmp_path / "kept.jsonl"])
        assert [r["request_id"] for r in kept] == ["r0", "r1", "r2"]
        assert written == [f"r{n}" for n in range(3, 60)]
    notes = [r for r in rows if r["event"] == "sys_error"]
    assert len(notes) == 1 and notes[0]["details"]["error"] == how
    assert [r["event"] for r in fallback_records(fallback)] == ["sys_error"]
    # The new file continues the chain.
    if how == "deleted":
        assert verify_files(trail_files(path)).ok
    else:
        assert not verify_files(trail_files(path)).ok  # its head is in kept.jsonl
        assert verify_files([tmp_path / "kept.jsonl", *trail_files(path)]).ok


def test_a_short_write_at_the_file_size_limit_is_efbig_not_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import resource

    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    with path.open("ab") as handle:
        monkeypatch.setattr(resource, "getrlimit", lambda which: (100, resource.RLIM_INFINITY))
        assert _files.short_write_errno(handle.fileno()) == errno.EFBIG
        monkeypatch.setattr(resource, "getrlimit", lambda which: (1000, resource.RLIM_INFINITY))
        assert _files.short_write_errno(handle.fileno()) == errno.ENOSPC


@pytest.mark.parametrize("how", ["deleted", "moved"])
async def test_a_file_lost_just_before_shutdown_is_noticed_at_shutdown(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "audit.jsonl"
    sink, fallback = await _three_on_disk(path, rotate_bytes=None)
    if how == "deleted":
        path.unlink()
    else:
        path.rename(tmp_path / "moved.jsonl")  # nothing created in its place
    await sink.aclose()  # nothing queued since: only the shutdown check can see it
    rows = records([path])
    notes = [r for r in rows if r["event"] == "sys_error"]
    expected = "deleted" if how == "deleted" else "replaced"
    assert len(notes) == 1 and notes[0]["details"]["error"] == expected
    assert [r["event"] for r in fallback_records(fallback)] == ["sys_error"]
    if how == "moved":
        # Its lines stay in the moved file, not written twice.
        moved = [r["request_id"] for r in records([tmp_path / "moved.jsonl"])]
        assert moved == ["r0", "r1", "r2"]
        assert "authz_allow" not in [r["event"] for r in rows]
        assert verify_files([tmp_path / "moved.jsonl", path]).ok


async def test_a_rotation_then_a_deletion_writes_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path, fsync="always", rotate_bytes=4096)
    for n in range(40):
        await sink.emit(event(n, reason="x" * 100))
    wait_until(lambda: sink.written >= 40)
    path.unlink()  # the live file, right after a rotation
    for n in range(40, 45):
        await sink.emit(event(n))
    await sink.aclose()
    files = trail_files(path)
    ids = [r["request_id"] for r in records(files) if r["event"] == "authz_allow"]
    assert len(ids) == len(set(ids))  # no line twice
    assert ids[-5:] == [f"r{n}" for n in range(40, 45)]
    result = verify_files(files, allow_missing_head=True)
    assert result.ok, result.problem


async def test_a_write_error_while_lines_are_written_again_loses_neither_them_nor_the_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    sink, fallback = await _three_on_disk(path, rotate_bytes=None, retry_interval=0.01)
    path.unlink()
    await anyio.sleep(0.6)  # the next write checks the path
    _failing_writes(monkeypatch, 1, short=False)  # and fails once, then is retried
    await sink.emit(event(3))
    wait_until(lambda: sink.written >= 6)
    await sink.aclose()
    rows = records([path])
    ids = [r["request_id"] for r in rows if r["event"] == "authz_allow"]
    assert ids == ["r0", "r1", "r2", "r3"]
    assert [r["details"]["error"] for r in rows if r["event"] == "sys_error"] == ["deleted"]
    assert verify_files([path]).ok


async def test_a_processor_failing_on_the_writers_own_events_does_not_crash_it(
    tmp_path: Path,
) -> None:
    def needs_path(logger: Any, method: str, data: Any) -> Any:
        data["route"] = data["path"]  # the writer's own events have no path
        return data

    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path, fsync="always", rotate_bytes=None, processors=[needs_path])
    await sink.emit(event(0, path="/a"))
    wait_until(lambda: sink.written == 1)
    path.unlink()
    await sink.aclose()
    # A crashed writer would have handed both to the fallback instead.
    rows = records([path])
    assert [r["event"] for r in rows] == ["authz_allow", "sys_error"]


async def test_a_copy_put_in_the_files_place_gets_no_line_twice(tmp_path: Path) -> None:
    # cp audit.jsonl x && mv x audit.jsonl (or sed -i): the old inode has no link
    # left, but the copy holds its lines.
    path = tmp_path / "audit.jsonl"
    sink, _ = await _three_on_disk(path, rotate_bytes=None)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(path.read_bytes())
    copy.replace(path)
    await sink.emit(event(3))
    await sink.aclose()
    rows = records([path])
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert sink.written == 5  # each line counted once
    assert verify_files([path]).ok


async def test_a_file_from_another_trail_in_the_files_place_does_not_hide_our_lines(
    tmp_path: Path,
) -> None:
    # Its seq numbers are higher than ours, but it holds none of our lines.
    other = tmp_path / "other.jsonl"
    sink_b, _ = make_sink(other, fsync="always")
    for n in range(10):
        await sink_b.emit(event(100 + n))
    await sink_b.aclose()
    path = tmp_path / "audit.jsonl"
    sink, _ = await _three_on_disk(path, rotate_bytes=None)
    path.unlink()
    other.replace(path)
    await sink.aclose()
    ours = [r["request_id"] for r in records([path]) if r["event"] == "authz_allow"]
    assert ours[-3:] == ["r0", "r1", "r2"]


async def test_a_copy_with_a_torn_last_line_gets_our_lines_on_lines_of_their_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = await _three_on_disk(path, rotate_bytes=None)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(path.read_bytes()[:-40])  # its last line cut short
    copy.replace(path)
    await sink.emit(event(3))
    await sink.aclose()
    rows = records([path])
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert verify_files([path]).ok
    assert list(tmp_path.glob("audit.jsonl.torn-*"))  # the torn part, set aside


async def test_a_torn_line_is_never_set_aside_through_a_planted_link(tmp_path: Path) -> None:
    # Whoever can write the directory plants links named as the copy will be:
    # the sink must not follow them and overwrite the file they point at.
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path)
    await sink.emit(event(0))
    await sink.aclose()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    for second in range(-1, 3):
        moment = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + second))
        (tmp_path / f"audit.jsonl.torn-{moment}-1").symlink_to(victim)
    with path.open("ab") as handle:
        handle.write(b"attacker's bytes")
    sink, _ = make_sink(path, mode=0o600)
    await sink.emit(event(1))
    await sink.aclose()
    assert victim.read_bytes() == b"precious\n"
    recovered = next(r for r in records([path]) if r["event"] == "sink_recovered")
    aside = tmp_path / recovered["details"]["moved_to"]
    assert not aside.is_symlink() and aside.read_bytes() == b"attacker's bytes"
    assert oct(aside.stat().st_mode & 0o777) == "0o600"  # the trail's mode, whatever umask
    assert verify_files([path]).ok


async def test_a_link_put_at_the_path_in_use_is_a_write_error_until_a_file_is_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    sink, fallback = await _three_on_disk(path, rotate_bytes=None, retry_interval=0.05)
    path.unlink()
    path.symlink_to(os.devnull)  # the trail would go nowhere, silently
    with anyio.fail_after(5):
        n = 3
        while sink.error is None:  # the path is checked with the writes, twice a second
            await sink.emit(event(n))
            n += 1
            await anyio.sleep(0.05)
    assert sink.error == "ELOOP" and not sink.healthy
    path.unlink()
    path.write_bytes(b"")
    wait_until(lambda: sink.error is None, timeout=3)
    await sink.emit(event(n))
    await sink.aclose()
    rows = records([path])
    assert [r["request_id"] for r in rows if r["event"] == "authz_allow"][-1] == f"r{n}"
    assert any(r["event"] == "sys_monitor_disabled" for r in fallback_records(fallback))
    assert os.path.getsize(os.devnull) == 0


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("deleted", id="file-deleted"),
        pytest.param("renamed", id="file-renamed-away"),
    ],
)
async def test_a_link_at_the_path_stays_an_error_through_every_retry(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "audit.jsonl"
    sink, fallback = await _three_on_disk(path, rotate_bytes=None, retry_interval=0.02)
    if how == "deleted":
        path.unlink()
    else:
        path.rename(tmp_path / "kept.jsonl")
    path.symlink_to(os.devnull)
    n = 3
    with anyio.fail_after(5):
        while sink.error is None:  # noticed with a write, at the next path check
            await sink.emit(event(n))
            n += 1
            await anyio.sleep(0.02)
    kept = tmp_path / "kept.jsonl"
    kept_size = kept.stat().st_size if how == "renamed" else 0
    # Many retries, over more than two path-check periods: none is a recovery, so
    # a fail_closed pipeline (which reads healthy) admits nothing meanwhile.
    healthy = []
    for _ in range(60):
        healthy.append(sink.healthy)
        await anyio.sleep(0.02)
    assert sink.error == "ELOOP" and not any(healthy)
    assert [r["event"] for r in fallback_records(fallback)] == ["sys_monitor_disabled"]
    if how == "renamed":  # the retries wrote nothing into the file moved away
        assert kept.stat().st_size == kept_size
    path.unlink()  # a file can be made at the path again
    wait_until(lambda: sink.error is None, timeout=3)
    await sink.aclose()
    # One outage, one recovery (with the note that the chain continues in a new file).
    assert [r["event"] for r in fallback_records(fallback)] == [
        "sys_monitor_disabled",
        "sys_error",
        "sys_monitor_enabled",
    ]
    written = [r["request_id"] for r in records([path]) if r["event"] == "authz_allow"]
    assert written[-1] == f"r{n - 1}"


async def test_the_writer_waits_quietly_while_the_disk_is_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fsync = "batch" leaves lines to sync when a write fails: the writer must
    # still sleep until the retry, not spin on a deadline already past.
    path = tmp_path / "audit.jsonl"
    _failing_writes(monkeypatch, 10_000, short=False)
    sink, _ = make_sink(path, fsync="batch", retry_interval=1.0)
    await sink.emit(event(1))
    wait_until(lambda: sink.error is not None)
    writer = sink._writer
    assert writer is not None
    started = _thread_cpu(writer)
    await anyio.sleep(0.6)
    assert _thread_cpu(writer) - started < 0.1
    await sink.aclose()


def _thread_cpu(thread: Any) -> float:
    """CPU seconds the thread has used (Linux: /proc/self/task/<tid>/stat)."""
    fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_a_non_ascii_renderer_and_a_lone_surrogate_do_not_stop_the_writer(
    tmp_path: Path,
) -> None:
    import structlog

    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path, processors=[structlog.processors.JSONRenderer(ensure_ascii=False)])
    await sink.emit(event(1, tool="\ud800"))
    await sink.emit(event(2, path="/caf\u00e9"))
    wait_until(lambda: sink.written == 2)
    assert sink.healthy
    await sink.aclose()
    rows = records([path])
    assert [r["request_id"] for r in rows] == ["r1", "r2"]
    assert rows[0]["tool"] == "\ud800" and rows[1]["path"] == "/caf\u00e9"
    assert path.read_bytes().isascii()
    assert verify_files([path]).ok


def test_a_fallback_write_does_not_wait_forever_for_an_interrupted_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM can interrupt the main thread inside the fallback lock; its handler
    # then joins the writer thread, whose last spill must not wait for that lock.
    from secmw.audit import file as file_module

    monkeypatch.setattr(file_module, "_FALLBACK_LOCK_WAIT", 0.1, raising=False)
    sink, fallback = make_sink(tmp_path / "audit.jsonl")
    done = threading.Event()
    sink._fallback_lock.acquire()  # held, as by the interrupted main thread
    try:
        writer = threading.Thread(target=lambda: (sink._alert(event(1)), done.set()))
        writer.start()
        assert done.wait(3)
    finally:
        sink._fallback_lock.release()
    assert "r1" in fallback.getvalue()
    anyio.run(sink.aclose)


async def test_a_link_planted_at_the_path_during_a_rotation_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    rename = os.rename

    def rename_then_plant(source: Any, target: Any) -> None:
        rename(source, target)
        if str(source) == str(path) and not path.exists():
            path.symlink_to(victim)  # in the gap between the rename and the new file

    monkeypatch.setattr(_writer.os, "rename", rename_then_plant)
    sink, _ = make_sink(path, rotate_bytes=2048, retry_interval=0.05)
    for n in range(40):
        await sink.emit(event(n, reason="x" * 100))
    wait_until(lambda: sink.error is not None)
    assert victim.read_bytes() == b"precious\n"
    monkeypatch.setattr(_writer.os, "rename", rename)
    path.unlink()  # the link is gone: the rotation completes
    wait_until(lambda: sink.error is None, timeout=3)
    await sink.emit(event(99))
    await sink.aclose()
    assert victim.read_bytes() == b"precious\n"
    assert not path.is_symlink()
    assert verify_files(trail_files(path)).ok


async def test_a_closed_sink_opens_again_and_continues_its_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path)
    await sink.emit(event(1))
    await sink.aclose()
    assert not sink.healthy
    await sink.startup()
    assert sink.healthy
    await sink.emit(event(2))
    await sink.aclose()
    assert verify_files([path]).ok
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [1, 2]
