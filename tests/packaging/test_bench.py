"""The benchmark scripts still run against today's code (bench/hotpath.py built the pipeline
by hand and broke silently when a constructor changed): a few rounds, no figures judged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_hot_path_benchmark_runs() -> None:
    for command in ("GET", "SET"):
        out = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "hotpath.py"), "--rounds", "5", "--command",
             command, "--pipeline", "1"],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        assert f"{command} x1 from 50 clients:" in out.stdout, out.stdout + out.stderr
