"""Golden tests: job file + setup SQL → the exact JSONL request lines sent to the provider.

Each folder under tests/golden/requests/ holds setup.sql, job.sql and expected.jsonl.
Regenerate after a deliberate change with: UPDATE_GOLDEN=1 pytest tests/test_golden_requests.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.conftest import Warehouse

CASES = sorted(p for p in (Path(__file__).parent / "golden" / "requests").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_job_file_compiles_to_golden_jsonl(warehouse: Warehouse, case: Path) -> None:
    warehouse.sql((case / "setup.sql").read_text())
    warehouse.cli("run", str(case / "job.sql"))
    lines = []
    for (path,) in warehouse.sql("SELECT path FROM warehouse_batch.batches ORDER BY shard_id"):
        lines += Path(path).read_text(encoding="utf-8").splitlines()
    lines.sort()
    expected = case / "expected.jsonl"
    if os.environ.get("UPDATE_GOLDEN"):
        expected.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert lines == expected.read_text(encoding="utf-8").splitlines()
    # custom_id is the request_hash: sha256 of the body exactly as sent (compact, raw UTF-8).
    for line in lines:
        request = json.loads(line)
        body = json.dumps(request["body"], ensure_ascii=False, separators=(",", ":"))
        assert request["custom_id"] == hashlib.sha256(body.encode()).hexdigest()
    # And the emulator received exactly those requests.
    assert warehouse.counters()["requests_received"] == len(lines)
