"""``secmw audit verify`` and ``tail``: tampering is found and named by seq."""

from __future__ import annotations

import base64
import json
import os
import tracemalloc
from pathlib import Path

import anyio
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secmw.audit import AuditEvent, CheckpointSigner, verify_files
from secmw.audit.cli import format_line
from secmw.audit.hashchain import GENESIS, chain_line, checkpoint_message, line_hash
from secmw.cli import main
from tests.audit_support import make_sink, trail_files


def write_trail(path: Path, count: int, **options: object) -> list[Path]:
    async def fill() -> None:
        sink, _ = make_sink(path, **options)
        for n in range(count):
            await sink.emit(
                AuditEvent(name="authz_allow", outcome="success", request_id=f"r{n + 1}")
            )
        await sink.aclose()

    anyio.run(fill)
    return trail_files(path)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def edit(path: Path, index: int, old: bytes, new: bytes) -> None:
    lines = lines_of(path)
    lines[index] = lines[index].replace(old, new)
    path.write_bytes(b"".join(lines))


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write_trail(path, 10)
    return path


def test_an_intact_trail_verifies(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(trail)]) == 0
    assert capsys.readouterr().out == "OK: 10 lines, seq 1..10\n"


def _edit_field(path: Path) -> None:
    edit(path, 4, b'"r5"', b'"r6"')


def _delete(path: Path) -> None:
    lines = lines_of(path)
    del lines[4]
    path.write_bytes(b"".join(lines))


def _swap(path: Path) -> None:
    lines = lines_of(path)
    lines[4], lines[5] = lines[5], lines[4]
    path.write_bytes(b"".join(lines))


def _insert_forged(path: Path) -> None:
    """Insert a line with a correct prev and seq: the next line's seq gives it away."""
    lines = lines_of(path)
    forged = chain_line(5, line_hash(lines[3].rstrip(b"\n")), '{"event":"authz_allow"}') + b"\n"
    lines.insert(4, forged)
    path.write_bytes(b"".join(lines))


def _insert_garbage(path: Path) -> None:
    lines = lines_of(path)
    lines.insert(4, b"not json\n")
    path.write_bytes(b"".join(lines))


def _rewrite_seq_type(path: Path) -> None:
    edit(path, 4, b'"seq":5', b'"seq":"5"')


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "words"),
    [
        pytest.param(_edit_field, 5, "does not match the hash", id="edited"),
        pytest.param(_delete, 5, "lines missing", id="deleted"),
        pytest.param(_swap, 5, "moved later", id="reordered"),
        pytest.param(_insert_forged, 6, "inserted", id="inserted-forged"),
        pytest.param(_insert_garbage, 5, "not a chain record", id="inserted-garbage"),
        pytest.param(_rewrite_seq_type, 5, "wrong type", id="seq-type"),
    ],
)
def test_tampering_names_the_first_bad_seq(
    trail: Path, capsys: pytest.CaptureFixture[str], tamper: object, bad_seq: int, words: str
) -> None:
    tamper(trail)  # type: ignore[operator]
    result = verify_files([trail])
    assert not result.ok and result.bad_seq == bad_seq
    assert result.problem is not None and words in result.problem
    assert main(["audit", "verify", str(trail)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"FAILED at seq {bad_seq} ")


def test_a_missing_rotated_file_is_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    files = write_trail(path, 60, rotate_bytes=4096)
    assert len(files) >= 3
    result = verify_files([files[0], *files[2:]])
    assert not result.ok and "deleted" in (result.problem or "")
    headless = verify_files(files[1:])  # the head is missing: deleted, or pruned by keep
    assert not headless.ok and "head is missing" in (headless.problem or "")
    anchored = verify_files(files[1:], allow_missing_head=True)  # keep pruned it: the rest chains
    assert anchored.ok and anchored.notes and "starts at seq" in anchored.notes[0]


def test_the_cli_accepts_a_missing_head_only_when_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_trail(tmp_path / "audit.jsonl", 60, rotate_bytes=4096)
    rest = [str(name) for name in files[1:]]
    assert main(["audit", "verify", *rest]) == 1
    assert "head is missing" in capsys.readouterr().out
    assert main(["audit", "verify", "--allow-missing-head", *rest]) == 0


def test_a_torn_line_inside_a_rotated_file_fails(tmp_path: Path) -> None:
    files = write_trail(tmp_path / "audit.jsonl", 60, rotate_bytes=4096)
    with open(files[0], "ab") as handle:
        handle.write(b'{"seq":999,"prev":"forged","event":"authz_allow"}')
    result = verify_files(files)
    assert not result.ok and "torn line inside a rotated file" in (result.problem or "")


def test_torn_tail_is_reported_not_failed(trail: Path) -> None:
    with trail.open("ab") as handle:
        handle.write(b'{"seq":11,"pr')
    result = verify_files([trail])
    assert result.ok and result.last_seq == 10
    assert "torn last line" in result.notes[0]


def test_a_big_trail_is_verified_line_by_line_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    prev, lines = GENESIS, []
    padding = "x" * 400
    for seq in range(1, 20_001):  # about 9 MB
        line = chain_line(seq, prev, f'{{"event":"authz_allow","reason":"{padding}"}}')
        prev = line_hash(line)
        lines.append(line + b"\n")
    path.write_bytes(b"".join(lines))
    del lines
    tracemalloc.start()
    try:
        result = verify_files([path])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.ok and result.last_seq == 20_000
    assert peak < 1_000_000, f"verify held {peak} bytes at once"


def test_checkpoints_verify_with_the_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = Ed25519PrivateKey.generate()
    public = tmp_path / "audit.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    path = tmp_path / "audit.jsonl"
    write_trail(path, 10, signer=CheckpointSigner(key), checkpoint_every=4)
    assert main(["audit", "verify", "--public-key", str(public), str(path)]) == 0
    assert "3 signed checkpoints verified" in capsys.readouterr().out
    # Re-signing is impossible without the key: a forged signature fails at its seq.
    lines = lines_of(path)
    record = json.loads(lines[4])
    assert record["event"] == "audit_checkpoint"
    record["details"]["sig"] = record["details"]["sig"][::-1]
    lines[4] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    assert main(["audit", "verify", "--public-key", str(public), str(path)]) == 1
    assert "FAILED at seq 5" in capsys.readouterr().out
    record["details"] = ["not", "an", "object"]
    lines[4] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    assert main(["audit", "verify", "--public-key", str(public), str(path)]) == 1
    assert "checkpoint signature is invalid" in capsys.readouterr().out


def test_a_rotated_checkpoint_key_verifies_with_both_public_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def public_pem(key: Ed25519PrivateKey, name: str) -> str:
        path = tmp_path / name
        path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return str(path)

    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    path = tmp_path / "audit.jsonl"
    write_trail(path, 6, signer=CheckpointSigner(old), checkpoint_every=4)
    write_trail(path, 6, signer=CheckpointSigner(new), checkpoint_every=4)  # the key rotated
    old_pub, new_pub = public_pem(old, "old.pub"), public_pem(new, "new.pub")
    both = ["audit", "verify", "--public-key", old_pub, "--public-key", new_pub, str(path)]
    assert main(both) == 0
    capsys.readouterr()
    assert main(["audit", "verify", "--public-key", old_pub, str(path)]) == 1
    assert "checkpoint signature is invalid" in capsys.readouterr().out
    third = public_pem(Ed25519PrivateKey.generate(), "third.pub")
    assert main(["audit", "verify", "--public-key", old_pub, "--public-key", third, str(path)]) == 1
    assert "which was not given" in capsys.readouterr().out


def test_a_key_with_no_checkpoints_fails(trail: Path, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "k.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert main(["audit", "verify", "--public-key", str(pem), str(trail)]) == 1


def test_an_empty_trail_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A sink writes sys_startup at once: a trail with no line was wiped.
    empty = tmp_path / "audit.jsonl"
    empty.touch()
    assert main(["audit", "verify", str(empty)]) == 1
    assert "the trail is empty" in capsys.readouterr().out


def test_unreadable_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(tmp_path / "nope.jsonl")]) == 2
    assert main(["audit", "tail", str(tmp_path / "nope.jsonl")]) == 2
    assert "secmw audit" in capsys.readouterr().err


def test_file_names_cannot_print_ok_over_a_failure(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Whoever edited the trail names the edited file: a CR and escapes would print
    # "OK" over the failure and hide the rest (conceal, SGR 8) on a terminal.
    edit(trail, 4, b'"r5"', b'"r6"')
    hostile = trail.parent / "audit.jsonl.1\r\x1b[2KOK: 10 lines, seq 1..10\x1b[8m"
    trail.rename(hostile)
    aside = trail.parent / "audit.jsonl\x1b[8m.torn-20261121T101010Z-10"
    aside.write_bytes(b'{"seq":11,"pr')
    assert main(["audit", "verify", str(hostile), str(aside)]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    assert "audit.jsonl.1\\r\\x1b[2KOK: 10 lines" in out
    assert "audit.jsonl\\x1b[8m.torn-" in out


@pytest.mark.parametrize("where", ["file", "key"])
def test_a_fifo_or_a_device_is_exit_2_not_a_hang(
    trail: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    fifo = tmp_path / "trail.fifo"
    os.mkfifo(fifo)  # no writer: reading it would wait forever
    for odd in (fifo, Path("/dev/zero")):  # /dev/zero: read until memory runs out
        args = [str(odd)] if where == "file" else ["--public-key", str(odd), str(trail)]
        assert main(["audit", "verify", *args]) == 2
        assert f"{str(odd)!r} is not a regular file" in capsys.readouterr().err


def test_tail_pretty_prints_and_escapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"

    async def fill() -> None:
        sink, _ = make_sink(path)
        for n in range(5):
            await sink.emit(
                AuditEvent(
                    name="authz_fail",
                    outcome="failure",
                    severity="warning",
                    path=f"/x{n}\r\n\x1b[31m",
                    status=403,
                    details={"k": n},
                )
            )
        await sink.aclose()

    anyio.run(fill)
    assert main(["audit", "tail", "-n", "2", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[0].split()[:1] == ["4"] and "authz_fail" in out[0]
    assert "path=/x3\\r\\n\\x1b[31m" in out[0] and "status=403" in out[0]
    assert 'details={"k":3}' in out[0]
    assert main(["audit", "tail", "-n", "0", str(path)]) == 0
    assert capsys.readouterr().out == ""
    for wrong in ("-5", "9223372036854775808"):
        with pytest.raises(SystemExit) as usage:
            main(["audit", "tail", "-n", wrong, str(path)])
        assert usage.value.code == 2
    # A client-chosen path (or tool name) cannot pose as more fields of the line.
    forged = {"seq": 1, "event": "authz_fail", "path": "/a status=200 subject=root", "tool": "t"}
    shown = format_line(json.dumps(forged).encode())
    assert 'path="/a status=200 subject=root" tool=t' in shown
    # Nor with look-alikes: U+3164 shows as a blank, U+FF1D as "=".
    looks = {"seq": 1, "event": "authz_fail", "path": "/a\u3164status\uff1d200"}
    shown = format_line(json.dumps(looks).encode())
    assert shown.endswith('path="/a\\u3164status\\uff1d200"') and shown.isascii()
    assert format_line(b"garbage\n").startswith("(unreadable)")
    assert format_line(b"[1]\n").startswith("(unreadable)")
    assert format_line(b"[" * 100_000 + b"]" * 100_000).startswith("(unreadable)")


def test_an_active_file_holding_only_a_torn_line_is_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    files = write_trail(path, 60, rotate_bytes=4096)
    rotated = [name for name in files if str(name) != str(path)]
    Path(path).write_bytes(b'{"seq":999,"pr')  # a crash during the first write after rotation
    result = verify_files([*rotated, path])
    assert result.ok, result.problem
    assert any("torn last line" in note for note in result.notes)


def test_a_torn_line_the_sink_set_aside_is_noted_not_chained(trail: Path) -> None:
    aside = trail.parent / f"{trail.name}.torn-20261121T101010Z-10"
    aside.write_bytes(b'{"seq":11,"pr')
    result = verify_files([trail, aside])
    assert result.ok and result.last_seq == 10
    assert any("set aside by the sink" in note for note in result.notes)


@pytest.mark.parametrize(
    "suffix",
    [
        pytest.param("-10", id="first-name"),
        pytest.param("-10-1", id="name-taken-once"),
    ],
)
def test_a_set_aside_name_with_an_attempt_number_is_noted_too(trail: Path, suffix: str) -> None:
    aside = trail.parent / f"{trail.name}.torn-20261121T101010Z{suffix}"
    aside.write_bytes(b'{"seq":11,"pr')
    result = verify_files([trail, aside])
    assert result.ok and result.last_seq == 10
    assert [note for note in result.notes if "torn" in note] == [
        f"{aside}: a torn line set aside by the sink (not in the chain)"
    ]


@pytest.mark.parametrize(
    "hidden",
    [
        pytest.param(["active"], id="active-renamed-as-torn"),
        pytest.param(["newest-rotated", "active"], id="newest-rotated-and-active-renamed"),
    ],
)
def test_a_trail_file_renamed_as_a_set_aside_torn_line_fails(
    tmp_path: Path, hidden: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    files = write_trail(path, 30, rotate_bytes=1024)
    assert len(files) >= 3
    named = {"active": files[-1], "newest-rotated": files[-2]}
    paths = [str(f) for f in files]
    for n, which in enumerate(hidden):
        source = named[which]
        torn = tmp_path / f"audit.jsonl.torn-20261121T10101{n}Z-{n + 1}"
        source.rename(torn)
        paths[paths.index(str(source))] = str(torn)
    assert main(["audit", "verify", "--allow-missing-head", *paths]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "holds whole lines" in out and ".torn-" in out


@pytest.mark.parametrize(
    "first", [b'{"seq": 1e999, "prev": "x"}\n', b"[" * 100_000 + b"\n"], ids=["inf", "deep"]
)
def test_lines_json_cannot_hold_are_failures_not_tracebacks(
    tmp_path: Path, first: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(first)
    assert main(["audit", "verify", str(path)]) == 1
    assert "FAILED" in capsys.readouterr().out


def _rechained(record: dict[str, object]) -> bytes:
    """``record`` as a line of the trail again (its ``seq`` and ``prev`` kept), newline included."""
    rest = {k: v for k, v in record.items() if k not in ("seq", "prev")}
    line = chain_line(record["seq"], record["prev"], json.dumps(rest, separators=(",", ":")))  # type: ignore[arg-type]
    return line + b"\n"


def test_a_checkpoints_time_is_signed_too(tmp_path: Path) -> None:
    # Cut back to a checkpoint, an attacker would move its time to look current.
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "audit.jsonl"
    write_trail(path, 10, signer=CheckpointSigner(key), checkpoint_every=4)
    lines = lines_of(path)
    record = json.loads(lines[4])
    assert record["event"] == "audit_checkpoint"
    cut = lines[:5]
    path.write_bytes(b"".join(cut))
    assert verify_files([path], public_key=key.public_key()).ok
    moved = json.loads(cut[4])
    moved["time"] = "2099-12-31T23:59:59.000000+00:00"
    cut[4] = _rechained(moved)
    path.write_bytes(b"".join(cut))
    result = verify_files([path], public_key=key.public_key())
    assert not result.ok and "checkpoint signature is invalid" in (result.problem or "")


def test_a_checkpoint_signed_without_its_time_verifies_with_a_note(tmp_path: Path) -> None:
    # Trails written before the time was signed stay verifiable.
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "audit.jsonl"
    write_trail(path, 3, signer=CheckpointSigner(key), checkpoint_every=3)
    lines = lines_of(path)
    record = json.loads(lines[3])
    assert record["event"] == "audit_checkpoint"
    old = key.sign(checkpoint_message(record["seq"], record["prev"]))
    record["details"]["sig"] = base64.b64encode(old).decode()
    lines[3] = _rechained(record)
    path.write_bytes(b"".join(lines[:4]))
    result = verify_files([path], public_key=key.public_key())
    assert result.ok
    assert any("does not cover its time" in note for note in result.notes)


def test_a_crlf_copy_of_a_trail_does_not_verify(trail: Path) -> None:
    # Bytes changed: and the sink would chain its next line on the CR-ended one.
    trail.write_bytes(trail.read_bytes().replace(b"\n", b"\r\n"))
    result = verify_files([trail])
    assert not result.ok and "edited" in (result.problem or "")
