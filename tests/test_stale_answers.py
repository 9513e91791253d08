"""A changed request keeps the row's last completed answer, marked stale, for CLI jobs that opt in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Warehouse, write_job
from warehouse_batch import publish
from warehouse_batch.emulator import Emulator, EmulatorConfig


def _job(tmp_path: Path, name: str, **header: object) -> Path:
    return write_job(tmp_path / f"{name}.sql", {"name": name, "model": "gpt-4o-mini", **header},
                     "SELECT id AS custom_id, question AS prompt FROM questions")


@pytest.fixture
def frozen(db: Path, monkeypatch: pytest.MonkeyPatch):
    """Batches stay in flight until the test moves the emulator's clock."""
    with Emulator(EmulatorConfig(validation_delay=60, time_scale=0)) as emu:
        monkeypatch.setenv("OPENAI_BASE_URL", emu.base_url)
        yield Warehouse(db, emu)


@pytest.mark.parametrize("part_rows", [1_000_000, 2], ids=["one part", "parts of two rows"])
def test_keep_stale_answers_shows_the_old_answer_until_the_new_one_arrives(
        frozen: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part_rows: int) -> None:
    # With parts of two rows the table is written by several statements plus one for the stale rows.
    monkeypatch.setattr(publish, "part_rows", lambda warehouse: part_rows)
    warehouse = frozen
    warehouse.sql("CREATE TABLE questions AS SELECT i AS id, 'question ' || i AS question FROM range(6) t(i)")
    keep, blank = _job(tmp_path, "keep", keep_stale_answers=True), _job(tmp_path, "blank")
    for job in (keep, blank):
        warehouse.cli("run", str(job))
    warehouse.emulator.advance(3600)
    warehouse.cli("sync")
    before = dict(warehouse.sql("SELECT custom_id, content FROM keep"))
    first_published = warehouse.sql("SELECT max(published_at) FROM keep")[0][0]

    warehouse.sql("UPDATE questions SET question = 'reworded ' || id WHERE id < 2")
    warehouse.sql("INSERT INTO questions VALUES (9, 'question 9')")
    for job in (keep, blank):
        warehouse.cli("run", str(job))
    # Without the option the changed rows are blank while their new request is pending.
    assert warehouse.sql("SELECT id, status, content IS NULL, is_stale FROM blank JOIN questions ON id = custom_id "
                         "WHERE id IN (0, 9) ORDER BY id") == [(0, "pending", True, False), (9, "pending", True, False)]
    rows = warehouse.rows("SELECT * FROM keep ORDER BY custom_id")
    changed = [r for r in rows if r["custom_id"] < 2]
    assert all(r["status"] == "completed" and r["is_stale"] and r["content"] == before[r["custom_id"]]
               and r["answer_request_hash"] != r["request_hash"] for r in changed)
    assert [r["status"] for r in rows if r["custom_id"] == 9] == ["pending"]  # new row: nothing to keep
    assert not any(r["is_stale"] for r in rows if r["custom_id"] >= 2)

    warehouse.emulator.advance(3600)
    warehouse.cli("collect", "keep")
    rows = warehouse.rows("SELECT * FROM keep ORDER BY custom_id")
    assert {(r["status"], r["is_stale"]) for r in rows} == {("completed", False)}
    assert all(r["answer_request_hash"] == r["request_hash"] for r in rows)
    renewed = [r for r in rows if r["custom_id"] < 2 or r["custom_id"] == 9]
    assert all(r["published_at"] > first_published for r in renewed)
    assert all(r["published_at"] <= first_published for r in rows if r not in renewed)
