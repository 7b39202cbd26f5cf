"""``secmw scan``: redacted text on stdout, findings on stderr or as JSON, exit codes."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from secmw.cli import main
from tests.redact_corpus import SPECS

GITHUB = SPECS["github_token"].make(random.Random(3))[1]


def test_scan_file_prints_redacted_text_and_findings_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.log"
    path.write_text(f"start\nuser token {GITHUB}\nend\n")
    assert main(["scan", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "start\nuser token [REDACTED:github_token]\nend\n"
    assert f"{path}:2:12: github_token (fingerprint " in captured.err
    assert GITHUB not in captured.err


def test_scan_json_report_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(f'{{"k": "{GITHUB}"}}'.encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["scan", "--json", "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["count"] == 1
    (finding,) = report["findings"]
    assert finding["type"] == "github_token"
    assert (finding["line"], finding["column"]) == (1, 8)
    assert GITHUB not in json.dumps(report)


def test_sse_findings_are_placed_in_the_file_as_received(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "stream.sse"
    path.write_text(
        f': comment\nid: 1\ndata: {GITHUB}\n\nevent: x\ndata: {{"a": "q {GITHUB}"}}\n\n'
        f"{'data: ' + 'y' * 40}\n\n: {GITHUB}\n\n"
    )
    assert main(["scan", "--format", "sse", str(path)]) == 1
    places = [line.split(": github_token")[0] for line in capsys.readouterr().err.splitlines()]
    assert places == [f"{path}:3:7", f"{path}:6:16", f"{path}:10:3"]


def test_clean_input_exits_0_and_is_unchanged_byte_for_byte(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    path = tmp_path / "clean.txt"
    path.write_bytes(b"nothing secret here \xff\n")
    assert main(["scan", str(path)]) == 0
    captured = capfdbinary.readouterr()
    assert captured.out == b"nothing secret here \xff\n"
    assert captured.err == b""


def test_unreadable_file_and_bad_config_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(tmp_path / "missing.txt")]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[redact]\nstyle = "rot13"\n')
    assert main(["scan", "--config", str(bad), str(bad)]) == 2
    assert "redact.style" in capsys.readouterr().err


def test_config_salt_makes_fingerprints_stable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "secmw.toml"
    config.write_text('[redact]\nsalt = "a-long-enough-salt-value"\nstyle = "hash"\n')
    path = tmp_path / "x.txt"
    path.write_text(GITHUB)
    outputs = []
    for _ in range(2):
        assert main(["scan", "--config", str(config), str(path)]) == 1
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith("[REDACTED:github_token:")


@pytest.mark.slow
def test_scan_runs_as_a_command(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text(f"k={GITHUB}\n")
    done = subprocess.run(
        [sys.executable, "-m", "secmw", "scan", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == "k=[REDACTED:github_token]\n"


def test_no_stdin_a_closed_reader_and_oversized_input_end_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    command = [sys.executable, "-m", "secmw", "scan"]
    closed = subprocess.run(  # "<&-": Python starts with sys.stdin = None
        command,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.close(0),
        timeout=60,
        check=False,
    )
    assert (closed.returncode, closed.stderr) == (
        2,
        "secmw scan: no standard input (give a file)\n",
    )
    big = tmp_path / "big.txt"
    big.write_text(f"k={GITHUB}\n" * 20_000)
    with subprocess.Popen(
        [*command, "--json", str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        process.stdout.read(10)
        process.stdout.close()  # "| head -c 10"
        _, err = process.communicate(timeout=60)
    assert process.returncode == 2  # output cut short: an error, not "found" (1)
    assert b"Traceback" not in err
    monkeypatch.setattr("secmw.redact.cli.MAX_INPUT", 100)
    assert main(["scan", str(big)]) == 2
    assert "is over" in capsys.readouterr().err


def test_scan_json_too_deep_to_parse_still_decodes_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.json"
    escaped = GITHUB.replace("_", "\\u005f")
    path.write_text("[" * 100_000 + f'"{escaped}"' + "]" * 100_000)
    assert main(["scan", str(path)]) == 1
    captured = capsys.readouterr()
    assert GITHUB[4:] not in captured.out and "[REDACTED:github_token]" in captured.out
    assert ": github_token (fingerprint " in captured.err
