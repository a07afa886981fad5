"""The `densepac` console entry: click's exit codes and messages survive the fast exit."""

import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "densepac.cli", *args], capture_output=True, text=True, timeout=120)


def test_exit_codes_and_output_pass_through(tmp_path):
    ok = _run("--help")
    assert ok.returncode == 0 and "upsample" in ok.stdout
    bad = _run("segment", str(tmp_path / "missing.png"), "-o", str(tmp_path / "out"))
    assert bad.returncode == 2 and "missing.png" in bad.stderr and "Traceback" not in bad.stderr
    usage = _run("no-such-command")
    assert usage.returncode == 2 and "No such command" in usage.stderr
