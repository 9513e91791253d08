"""The one-command example: `python -m warehouse_batch.dbt.demo`, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow  # ~18 s: four dbt invocations twice, in a subprocess
def test_demo_runs_the_example_project_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    command = [sys.executable, "-m", "warehouse_batch.dbt.demo", "--dir", str(tmp_path / "demo")]
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "200 rows (200 pending)" in first.stdout and "196 requests sent now" in first.stdout
    assert "WARN 200 warehouse_batch_llm_batch_complete_review_sentiment_" in first.stdout
    assert "200 rows (200 completed)" in first.stdout
    assert "spend 196 paid request(s)" in first.stdout and "│ yoga mat" in first.stdout

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "0 requests sent now" in again.stdout and "sent now" not in again.stdout.replace("0 requests sent now", "")
    assert "spend 196 paid request(s)" in again.stdout
