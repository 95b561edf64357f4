"""The benchmark scripts still run (their numbers live in the README, not here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.slow
def test_gpu_bench_cpu_mode_runs_every_configuration_of_a_rule(tmp_path):
    prefix = tmp_path / "gpu_bench"
    result = subprocess.run(
        [sys.executable, str(BENCH / "gpu_bench.py"), "--cpu", "--rules", "tess", "--steps", "1", "--out", str(prefix)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    payload = json.loads(prefix.with_name("gpu_bench.json").read_text())
    configurations = {(r["precision"], r["jit"]) for r in payload["results"]}
    assert configurations == {("float32", False), ("mixed_float16", False), ("float32", True), ("mixed_float16", True)}
    for row in payload["results"]:
        assert row["status"] == "ok", row
        assert row["samples_per_second"] > 0 and row["applied_steps"] == 3  # warm-up + memory step + timed step
    table = prefix.with_name("gpu_bench.md").read_text()
    assert table.count("| tess |") == 4


def test_gpu_bench_without_a_gpu_says_what_to_do():
    result = subprocess.run(
        [sys.executable, str(BENCH / "gpu_bench.py")], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"},
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "--cpu" in result.stderr.strip().splitlines()[-1]
