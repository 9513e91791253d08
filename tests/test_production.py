"""The Batch API as it behaves in production (issue #11), on the strict emulator, through the real SDK.

Provider trouble is scheduling: quota refusals (asynchronous or fail-fast), spurious "Cannot find
file" and batches that ran nothing are sent again by themselves, never consuming a request's
attempts and never paying twice. Files expire and are cleaned up; limits are enforced before upload;
Azure OpenAI is a provider like OpenAI.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_KEY, Warehouse, write_job
from warehouse_batch import retries
from warehouse_batch.emulator import Emulator, EmulatorConfig

WAIT = ("--wait", "--poll-interval", "0.05")


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # Deferred shards are due again at once; the wait loop still polls as the tests ask.
    monkeypatch.setenv("WAREHOUSE_BATCH_BACKOFF", "0")
    monkeypatch.setenv("WAREHOUSE_BATCH_MIN_POLL_INTERVAL", "0")


def _reviews(warehouse: Warehouse, n: int = 40) -> None:
    warehouse.sql(f"CREATE OR REPLACE TABLE reviews AS SELECT i AS id, 'Review number ' || i || ': ' || "
                  f"repeat('good value and quick delivery ', 6) AS text FROM range({n}) t(i)")


def _job(tmp_path: Path, name: str = "reviews_job", **header: Any) -> Path:
    return write_job(tmp_path / f"{name}.sql", {"name": name, "model": "gpt-4o-mini",
                                                  "output_schema": "sentiment VARCHAR", **header},
                     "SELECT id AS custom_id, text AS prompt FROM reviews")


def _all_completed_once(warehouse: Warehouse, table: str, rows: int) -> None:
    """Every row completed, every request sent in exactly one batch that ran (attempts untouched)."""
    assert warehouse.sql(f"SELECT status, count(*) FROM {table} GROUP BY 1") == [("completed", rows)]
    assert warehouse.sql("SELECT DISTINCT attempts FROM warehouse_batch.request_attempts") == [(1,)]
    assert warehouse.sql(f"SELECT count(*) = count(DISTINCT custom_id) FROM {table}") == [(True,)]
    counters = warehouse.counters()
    # Batches that ran answered each request once: completed batches' totals add up to the requests.
    ran = warehouse.sql("SELECT coalesce(sum(total_count), 0) FROM warehouse_batch.batches "
                        "WHERE status = 'completed' AND job_name = ?", [table])
    assert ran == [(rows,)]
    assert counters["batches_cancelled"] == 0


# -- 1. quota is scheduling ---------------------------------------------------------------------
@pytest.mark.parametrize("style", ["async", "fail-fast"])
def test_a_job_larger_than_the_quota_finishes_by_itself(warehouse: Warehouse, tmp_path: Path, style: str) -> None:
    _reviews(warehouse)
    # ~100 tokens a line by the emulator's count: the quota holds about 10 of the 40 requests at once.
    warehouse.emulator.configure(enqueued_token_limit=1000, token_limit_style=style)
    report = warehouse.cli_json("run", str(_job(tmp_path)), *WAIT)[0]
    assert report["statuses"] == {"completed": 40}
    _all_completed_once(warehouse, "reviews_job", 40)
    # The quota is learned (the stated 1,000, or less where our estimate undercounts the provider's)
    # and it shaped the shards that were finally sent.
    [(model, learned)] = warehouse.sql("SELECT model, enqueued_tokens FROM warehouse_batch.quotas")
    assert model == "gpt-4o-mini" and 0 < learned <= 1000
    assert warehouse.sql("SELECT count(*) > 1 FROM warehouse_batch.batches WHERE status = 'completed'") == [(True,)]
    assert warehouse.sql("SELECT count(*) FROM warehouse_batch.results WHERE error_code IS NOT NULL") == [(0,)]
    if style == "fail-fast":
        assert warehouse.counters()["batch_create_calls"] > warehouse.counters()["batches_created"]


def test_a_learned_quota_shapes_the_next_runs_shards(warehouse: Warehouse, tmp_path: Path) -> None:
    _reviews(warehouse)
    warehouse.emulator.configure(enqueued_token_limit=1000)
    warehouse.cli("run", str(_job(tmp_path)), *WAIT)
    _reviews(warehouse, 80)  # 40 new rows
    plan = warehouse.cli_json("plan", str(_job(tmp_path)))[0]["counts"]
    assert plan["to_submit"] == 40 and plan["shards"] > 1


def test_a_configured_quota_cuts_shards_before_anything_is_refused(warehouse: Warehouse, tmp_path: Path) -> None:
    _reviews(warehouse)
    warehouse.emulator.configure(enqueued_token_limit=1000)
    job = _job(tmp_path, enqueued_token_quota=600)
    assert warehouse.cli_json("plan", str(job))[0]["counts"]["shards"] > 1
    warehouse.cli("run", str(job), *WAIT)
    _all_completed_once(warehouse, "reviews_job", 40)


def test_quota_never_blocks_another_job(warehouse: Warehouse, tmp_path: Path) -> None:
    _reviews(warehouse)
    warehouse.emulator.configure(enqueued_token_limit=1000)
    warehouse.cli("run", str(_job(tmp_path, "first")))  # no wait: shards in line for the quota
    warehouse.sql("CREATE TABLE docs AS SELECT 1 AS id, 'Hello' AS text")
    other = write_job(tmp_path / "other.sql", {"name": "other", "model": "gpt-4.1-mini"},
                      "SELECT id AS custom_id, text AS prompt FROM docs")
    warehouse.cli("run", str(other), *WAIT)
    assert warehouse.sql("SELECT status FROM other") == [("completed",)]
    warehouse.cli("sync", *WAIT)
    _all_completed_once(warehouse, "first", 40)


# -- 2. transient provider failures -------------------------------------------------------------
@pytest.mark.parametrize("style", ["async", "sync"])
def test_spurious_cannot_find_file_is_sent_again(warehouse: Warehouse, tmp_path: Path, style: str) -> None:
    _reviews(warehouse)
    warehouse.emulator.configure(file_not_found_rate=1.0, file_not_found_style=style)
    warehouse.cli("run", str(_job(tmp_path, max_requests_per_shard=10)), *WAIT)
    _all_completed_once(warehouse, "reviews_job", 40)
    counters = warehouse.counters()
    assert counters["batch_create_calls"] == 8  # every shard missed once, then passed
    assert counters["files_uploaded"] == 4  # the files existed: nothing uploaded twice


def test_an_input_file_really_gone_is_uploaded_again(warehouse: Warehouse, tmp_path: Path) -> None:
    _reviews(warehouse, 10)
    warehouse.cli("run", str(_job(tmp_path)), "--keep-input-files")  # submitted, no wait
    file_id = warehouse.sql("SELECT file_id FROM warehouse_batch.batches")[0][0]
    batch_id = warehouse.sql("SELECT batch_id FROM warehouse_batch.batches")[0][0]
    # The provider loses the file and fails the batch the way production does.
    engine = warehouse.emulator.engine
    with engine.lock:
        engine.files.delete(file_id, int(engine.clock.now()))
        record = engine.batches[batch_id]
        record.data.update(status="failed", errors={"object": "list", "data": [
            {"code": "invalid_request", "param": "file_id", "line": None,
             "message": f"Cannot find file {file_id}, or organization org-x does not have access to it."}]})
        record.prep = None
    warehouse.cli("collect", "reviews_job", *WAIT)
    _all_completed_once(warehouse, "reviews_job", 10)
    assert warehouse.counters()["files_uploaded"] == 2


def test_a_batch_that_failed_before_running_anything_is_sent_again(warehouse: Warehouse, tmp_path: Path) -> None:
    _reviews(warehouse, 10)
    warehouse.cli("run", str(_job(tmp_path)))  # submitted, no wait
    batch_id = warehouse.sql("SELECT batch_id FROM warehouse_batch.batches")[0][0]
    engine = warehouse.emulator.engine
    with engine.lock:  # the service fails it during validation, for reasons of its own
        engine.batches[batch_id].data.update(status="failed", errors=None)
        engine.batches[batch_id].prep = None
    warehouse.cli("collect", "reviews_job", *WAIT)
    _all_completed_once(warehouse, "reviews_job", 10)
    assert warehouse.sql("SELECT deferrals, deferred_reason FROM warehouse_batch.batches") == [(1, "transient")]


def test_deferral_is_a_declared_move_that_leaves_attempts_alone(warehouse: Warehouse, tmp_path: Path) -> None:
    from warehouse_batch.ledger import _FROM, ShardState

    assert ShardState.SUBMITTED in _FROM[ShardState.UPLOADED] and ShardState.SUBMITTED in _FROM[ShardState.WRITTEN]
    assert ShardState.COLLECTED not in _FROM[ShardState.UPLOADED]  # a collected shard never comes back


# -- 3. file hygiene ------------------------------------------------------------------------------
def test_files_expire_and_inputs_are_deleted_once_loaded(warehouse: Warehouse, tmp_path: Path) -> None:
    _reviews(warehouse, 10)
    warehouse.cli("run", str(_job(tmp_path, max_requests_per_shard=5, output_expires_after="20d")), *WAIT)
    engine = warehouse.emulator.engine
    files = list(engine.files._files.values())
    # Inputs are gone; results carry the expiry the batch asked for (anchored at their creation).
    assert {f.purpose for f in files} == {"batch_output"}
    assert all(f.expires_at - f.created_at == 20 * 86400 for f in files)
    assert warehouse.counters()["calls"].get("DELETE /v1/files/{file_id}") == 2
    assert warehouse.sql("SELECT count(*) FROM warehouse_batch.batches WHERE input_deleted_at IS NULL") == [(0,)]
    # The shard files in the work dir go too (nothing reads a collected shard's file again); the
    # downloaded results stay, they hold the whole answer lines.
    assert _work_files(warehouse, "shards") == []
    assert len(_work_files(warehouse, "results")) == 2


def test_kept_input_files_expire_by_themselves(warehouse: Warehouse, tmp_path: Path) -> None:
    _reviews(warehouse, 10)
    warehouse.cli("run", str(_job(tmp_path)), "--keep-input-files", *WAIT)
    inputs = [f for f in warehouse.emulator.engine.files._files.values() if f.purpose == "batch"]
    assert len(inputs) == 1 and inputs[0].expires_at - inputs[0].created_at == 14 * 86400
    [shard] = _work_files(warehouse, "shards")
    assert len(shard.read_text().splitlines()) == 10


def test_the_shard_files_of_a_cancelled_job_are_deleted(warehouse: Warehouse, tmp_path: Path) -> None:
    # A budget of one batch at a time: one shard is sent, the others wait uploaded, never created.
    warehouse.emulator.configure(validation_delay=10, time_scale=0)
    _reviews(warehouse, 30)
    warehouse.cli("run", str(_job(tmp_path, max_enqueued_tokens=600, max_requests_per_shard=5)))
    shards = warehouse.sql("SELECT count(*) FROM warehouse_batch.batches")[0][0]
    assert warehouse.counters()["batches_created"] == 1 < shards
    assert len(_work_files(warehouse, "shards")) == shards
    warehouse.cli("cancel", "reviews_job")
    # The unsent shards end at once, files and all; the sent one when its cancelled batch is collected.
    [sent] = _work_files(warehouse, "shards")
    assert warehouse.sql("SELECT count(*) FROM warehouse_batch.batches WHERE state = 'collected' "
                         "AND status = 'cancelled' AND input_deleted_at IS NOT NULL") == [(shards - 1,)]
    warehouse.emulator.advance(11)
    warehouse.cli("collect", "reviews_job", *WAIT, expect=5)  # finished, no row completed
    assert not sent.exists() and _work_files(warehouse, "shards") == []
    assert warehouse.sql("SELECT count(*) FROM warehouse_batch.batches WHERE state <> 'collected'") == [(0,)]


def _work_files(warehouse: Warehouse, kind: str) -> list[Path]:
    return sorted(Path(f"{warehouse.db}.warehouse_batch").glob(f"reviews_job/{kind}/*.jsonl"))


# -- 4. Azure OpenAI ----------------------------------------------------------------------------
@pytest.fixture(params=["openai", "azure-v1", "azure-api-version"])
def flavored(request: pytest.FixtureRequest, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> tuple[Warehouse, list[str]]:
    """The same warehouse fixture, served as OpenAI or as Azure OpenAI (v1 or api-version API)."""
    if request.param == "openai":
        return warehouse, []
    warehouse.emulator.configure(flavor="azure")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", warehouse.emulator.url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", API_KEY)
    if request.param == "azure-api-version":
        monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    else:
        monkeypatch.delenv("OPENAI_API_VERSION", raising=False)
    return warehouse, ["--provider", "azure", "--price-model", "gpt-4o-mini"]


@pytest.mark.smoke
def test_core_pipeline_on_each_provider(flavored: tuple[Warehouse, list[str]], tmp_path: Path) -> None:
    warehouse, flags = flavored
    _reviews(warehouse, 12)
    job = _job(tmp_path, max_requests_per_shard=5)
    report = warehouse.cli_json("run", str(job), *flags, *WAIT)[0]
    assert report["statuses"] == {"completed": 12}
    assert warehouse.sql("SELECT count(*) FROM reviews_job WHERE sentiment IS NOT NULL AND cost_usd > 0") == [(12,)]
    sent = warehouse.counters()["requests_received"]
    # Re-running sends nothing.
    again = warehouse.cli_json("run", str(job), *flags, *WAIT)[0]
    assert again["counts"]["to_submit"] == 0 and warehouse.counters()["requests_received"] == sent
    # A retry of expired requests sends just those, in a new batch.
    warehouse.sql("UPDATE warehouse_batch.results SET status = 'expired', error_code = 'batch_expired' "
                  "WHERE request_hash IN (SELECT request_hash FROM warehouse_batch.requests ORDER BY 1 LIMIT 2)")
    warehouse.cli("retry", "reviews_job")
    warehouse.cli("collect", "reviews_job", *WAIT)
    assert warehouse.counters()["requests_received"] == sent + 2
    assert warehouse.sql("SELECT status, count(*) FROM reviews_job GROUP BY 1") == [("completed", 12)]


def test_azure_refuses_embeddings_at_plan(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.sql("CREATE TABLE docs AS SELECT 1 AS id, 'hello' AS text")
    job = write_job(tmp_path / "emb.sql", {"name": "emb", "model": "text-embedding-3-small",
                                           "endpoint": "/v1/embeddings", "provider": "azure"},
                    "SELECT id AS custom_id, text AS input FROM docs")
    result = warehouse.cli("plan", str(job), expect=3)
    assert "embeddings are not supported" in result.output and "/v1/chat/completions" in result.output


def test_a_deployment_name_is_priced_like_its_model(warehouse: Warehouse, tmp_path: Path) -> None:
    _reviews(warehouse, 5)
    job = _job(tmp_path, model="prod-mini-batch", provider="azure")
    assert warehouse.cli_json("plan", str(job))[0]["counts"]["est_cost_usd"] is None
    priced = warehouse.cli_json("plan", str(job), "--price-model", "gpt-4o-mini")[0]["counts"]["est_cost_usd"]
    assert priced and priced > 0
    # A cost guard works on a deployment name once it is priced.
    warehouse.cli("plan", str(job), "--price-model", "gpt-4o-mini", "--max-cost-usd", "1")


def test_azure_waits_a_minute_between_status_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAREHOUSE_BATCH_MIN_POLL_INTERVAL")
    from warehouse_batch.providers import AzureBatchProvider, OpenAIBatchProvider

    azure = AzureBatchProvider(base_url="http://127.0.0.1:9", api_key="k")
    assert azure.min_poll_interval == 60 and OpenAIBatchProvider(api_key="k").min_poll_interval == 0
    assert str(azure._client.base_url) == "http://127.0.0.1:9/openai/v1/"


class _FakeCredential:
    """Stands in for DefaultAzureCredential: each token expires at once, so every call refreshes."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(f"entra-token-{len(self.scopes)}", int(time.time()) - 1)


@pytest.mark.parametrize("api_version", [None, "2024-10-21"])
def test_entra_id_tokens_are_fetched_and_refreshed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   api_version: str | None) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    from warehouse_batch.providers.azure import COGNITIVE_SCOPE, AzureBatchProvider

    credential = _FakeCredential()
    shard = tmp_path / "s.jsonl"
    shard.write_text('{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini",'
                     '"messages":[{"role":"user","content":"hi"}]}}\n')
    with Emulator(EmulatorConfig(flavor="azure")) as emu:
        provider = AzureBatchProvider(base_url=emu.url, credential=credential, api_version=api_version)
        file_id = provider.upload(shard, "s.jsonl", expires_after=14 * 86400)
        assert provider.file_exists(file_id)
        seen = emu.counters()["calls"]
    assert len(credential.scopes) >= 2 and set(credential.scopes) == {(COGNITIVE_SCOPE,)}
    assert sum(seen.values()) >= 2


def test_azure_result_quirks_are_normalised() -> None:
    from openai.types import Batch

    from warehouse_batch.providers.openai import batch_info

    batch = Batch.construct(id="batch_1", object="batch", endpoint="/chat/completions", input_file_id="file-1",
                            completion_window="24h", status="Validating", created_at="2024-07-19T12:00:00Z",
                            output_file_id="", error_file_id="", request_counts=None, errors=None, metadata=None)
    info = batch_info(batch)
    assert (info.status, info.created_at, info.output_file_id, info.error_file_id, info.total) == (
        "validating", 1721390400, None, None, None)


# -- 5. limits before upload ---------------------------------------------------------------------
def test_embedding_inputs_cut_shards_and_oversized_requests_are_refused(warehouse: Warehouse, tmp_path: Path) -> None:
    # 26 requests of 2,000 inputs = 52,000 inputs: more than one batch may hold.
    warehouse.sql("CREATE TABLE chunks AS SELECT i AS id, list_resize(['w' || i], 2000, 'w') AS texts "
                  "FROM range(26) t(i)")
    job = write_job(tmp_path / "emb.sql", {"name": "emb", "model": "text-embedding-3-small",
                                           "endpoint": "/v1/embeddings"},
                    "SELECT id AS custom_id, texts AS input FROM chunks")
    assert warehouse.cli_json("plan", str(job))[0]["counts"]["shards"] == 2
    warehouse.sql("INSERT INTO chunks SELECT 99, list_resize(['w'], 2049, 'w')")
    result = warehouse.cli("plan", str(job), expect=3)
    assert "more than 2,048 inputs" in result.output and "99" in result.output
    assert warehouse.counters()["files_uploaded"] == 0


def test_default_shard_size_limit_is_200_million_bytes() -> None:
    from warehouse_batch.jobs import MAX_BYTES_PER_SHARD, Job

    assert MAX_BYTES_PER_SHARD == 200_000_000
    assert Job(name="j", query="SELECT 1").max_bytes_per_shard == 200_000_000
    # Jobs stored by 0.1 with the old 200 MiB default still load.
    assert Job.from_options({"name": "j", "query": "SELECT 1", "max_bytes_per_shard": 209715200}).max_bytes_per_shard \
        == 200_000_000


def test_azure_allows_100000_requests_per_file() -> None:
    from warehouse_batch.errors import JobError
    from warehouse_batch.jobs import Job
    from warehouse_batch.providers import max_requests_per_file

    assert max_requests_per_file(Job(name="j", query="SELECT 1", provider="azure")) == 100_000
    assert max_requests_per_file(Job(name="j", query="SELECT 1")) == 50_000
    with pytest.raises(JobError, match="at most 50,000"):
        Job(name="j", query="SELECT 1", max_requests_per_shard=60_000)
    with pytest.raises(JobError, match="1,209,600"):
        Job(name="j", query="SELECT 1", provider="azure", input_expires_after="2d")


# -- the one classification -----------------------------------------------------------------------
@pytest.mark.parametrize(("errors", "completed", "kind"), [
    ([{"code": "token_limit_exceeded", "line": None, "message": "Enqueued token limit reached"}], 0, retries.QUOTA),
    ([{"code": "invalid_request", "param": "file_id", "line": None,
       "message": "Cannot find file file-1, or organization org-1 does not have access to it."}], 0, retries.FILE_MISSING),
    ([], 0, retries.TRANSIENT),
    ([{"code": "server_error", "line": None, "message": "oops"}], None, retries.TRANSIENT),
    ([{"code": "model_not_found", "line": 3, "message": "unknown model"}], 0, None),
    ([{"code": "too_many_tasks", "line": None, "message": "too many"}], 0, None),
    ([], 5, None),  # something ran: its answers are collected, never resent
])
def test_failed_batches_classified(errors: list[dict[str, Any]], completed: int | None, kind: str | None) -> None:
    assert retries.provider_trouble(errors, completed) == kind


def test_create_refusals_classified() -> None:
    assert retries.create_refusal(400, "token_limit_exceeded", "token_limit_exceeded: ...") == retries.QUOTA
    assert retries.create_refusal(400, "invalid_request", "Cannot find file file-1, or ...") == retries.FILE_MISSING
    assert retries.create_refusal(503, None, "unavailable") == retries.TRANSIENT
    assert retries.create_refusal(400, "invalid_value", "Invalid value: endpoint") is None
    assert retries.learned_limit("... Limit: 90,000 enqueued tokens. Please ...") == 90_000
