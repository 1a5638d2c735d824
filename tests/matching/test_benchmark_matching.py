"""benchmarks/matching.py runs: its --quick smoke run on a sample of FEBRL, both engines, and
writes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_matching_benchmark_runs_quick() -> None:
    pytest.importorskip("recordlinkage")
    pytest.importorskip("splink")
    results = REPO / "benchmarks" / "results" / "matching.json"
    before = results.stat().st_mtime_ns if results.exists() else None
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "matching.py"), "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "FEBRL4 link A→B, without soc_sec_id" in done.stdout
    assert "Splink" in done.stdout
    assert "nothing written" in done.stdout
    assert (results.stat().st_mtime_ns if results.exists() else None) == before
