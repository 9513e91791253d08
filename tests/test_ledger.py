"""The ledger's shard state machine: every legal move succeeds, every other move is refused and changes nothing."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from warehouse_batch.ledger import IllegalTransition, Ledger, ShardState
from warehouse_batch.warehouses import open_warehouse

S = ShardState
LEGAL = {
    (S.WRITTEN, S.UPLOADING), (S.UPLOADING, S.UPLOADING), (S.UPLOADING, S.UPLOADED),
    (S.UPLOADED, S.CREATING), (S.CREATING, S.CREATING), (S.CREATING, S.SUBMITTED),
    (S.WRITTEN, S.COLLECTED), (S.UPLOADING, S.COLLECTED), (S.UPLOADED, S.COLLECTED),
    (S.CREATING, S.COLLECTED), (S.SUBMITTED, S.COLLECTED),
    # Deferred by provider trouble: back in line to be created again, or uploaded again (file gone).
    (S.CREATING, S.UPLOADED), (S.SUBMITTED, S.UPLOADED), (S.CREATING, S.WRITTEN), (S.SUBMITTED, S.WRITTEN),
}


@pytest.mark.parametrize(("start", "to"), list(itertools.product(S, S)), ids=lambda s: str(s))
def test_shard_moves(tmp_path: Path, start: ShardState, to: ShardState) -> None:
    with open_warehouse(tmp_path / "w.duckdb") as warehouse:
        ledger = Ledger(warehouse)
        warehouse.execute(
            "INSERT INTO warehouse_batch.batches (shard_id, job_name, run_id, endpoint, path, line_count, byte_count, "
            "sha256, state) VALUES ('s1', 'j', 'r', '/v1/chat/completions', '/x', 1, 1, 'h', ?)", [str(start)])
        if (start, to) in LEGAL:
            ledger.move("s1", to)
            assert warehouse.scalar("SELECT state FROM warehouse_batch.batches") == str(to)
        else:
            with pytest.raises(IllegalTransition, match=f"cannot move to {to} from {start}"):
                ledger.move("s1", to)
            assert warehouse.scalar("SELECT state FROM warehouse_batch.batches") == str(start)
