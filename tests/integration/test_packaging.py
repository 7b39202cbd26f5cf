"""The distribution: sdist and wheel build, carry complete metadata, install clean."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run(*args: str | Path, cwd: Path = ROOT, timeout: float = 240) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT)  # sdist, then a wheel built from it
    return out


def test_wheel_metadata_is_complete(dist: Path) -> None:
    wheel = next(dist.glob("secmw-*.whl"))
    assert next(dist.glob("secmw-*.tar.gz"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
        entry_points = archive.read(
            next(n for n in names if n.endswith("entry_points.txt"))
        ).decode()
    assert "secmw/py.typed" in names
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)
    assert metadata["Name"] == "secmw"
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.11"
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    assert any(url.startswith("Source,") for url in metadata.get_all("Project-URL"))
    requires = " ".join(metadata.get_all("Requires-Dist"))
    for core in ("pyjwt", "cryptography", "limits", "pydantic", "anyio", "structlog"):
        assert core in requires.lower()
    assert "secmw = secmw.cli:main" in entry_points


def test_wheel_installs_into_a_fresh_venv_and_runs(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python, secmw = venv / "bin" / "python", venv / "bin" / "secmw"
    wheel = next(dist.glob("secmw-*.whl"))
    run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-c",
        ROOT / "constraints.txt",
        wheel,
    )
    assert run(secmw, "--version").startswith("secmw ")
    assert "--port" in run(secmw, "demo", "--help")
    out = run(python, "-c", "import secmw, secmw.policy, secmw.config; print(len(secmw.__all__))")
    assert int(out) > 20
    # The core install has no web framework: the demo says which extra it needs.
    demo = subprocess.run(
        [str(secmw), "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert demo.returncode == 1
    assert "secmw[gateway]" in demo.stderr


def test_config_models_type_check_without_the_pydantic_plugin(tmp_path: Path) -> None:
    settings = tmp_path / "mypy.ini"
    settings.write_text("[mypy]\nstrict = True\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(settings), "--cache-dir",
         str(tmp_path / "cache"), str(ROOT / "tests" / "typing" / "config_in_code.py")],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
