"""Estimates people can trust (#15): exact input tokens in plan, expected and upper-bound output and
cost, the guards that choose their figure, the daily budget, run --sample, estimate vs actual."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Warehouse, write_job
from tests.test_schema import SENTIMENT_JSON
from warehouse_batch import estimates, priors, sampling, tokens

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "reviews"

# plan --json of the example jobs over examples/reviews/reviews.csv (200 rows, 196 distinct prompts):
# input tokens counted exactly; output expected from the priors (one label / a typical answer of
# the schema / none for embeddings); upper bound max_tokens, else 256; costs at gpt-4o-mini /
# text-embedding-3-small batch prices.
PLANS = {
    "review_sentiment": dict(
        to_submit=196, est_input_tokens=9949, input_tokens_method="exact",
        est_output_tokens_expected=196, est_output_tokens_upper_bound=980,
        output_tokens_method="prior: one of the labels the system prompt lists",
        cost_usd_expected=0.000804975, cost_usd_upper_bound=0.001040175),
    "review_sentiment_columns": dict(
        to_submit=196, est_input_tokens=36213, input_tokens_method="exact",
        est_output_tokens_expected=6468, est_output_tokens_upper_bound=50176,
        output_tokens_method="prior: a typical answer of the schema",
        cost_usd_expected=0.004656375, cost_usd_upper_bound=0.017768775),
    "review_embeddings": dict(
        to_submit=196, est_input_tokens=5158, input_tokens_method="exact",
        est_output_tokens_expected=0, est_output_tokens_upper_bound=0,
        output_tokens_method="none (output is not billed)",
        cost_usd_expected=0.00005158, cost_usd_upper_bound=0.00005158),
}


@pytest.fixture
def reviews(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    """The example reviews as a `reviews` table, run from the repository root (two examples read the CSV)."""
    monkeypatch.chdir(ROOT)
    warehouse.sql(f"CREATE TABLE reviews AS SELECT * FROM read_csv('{EXAMPLES / 'reviews.csv'}', header = true)")
    return warehouse


@pytest.mark.parametrize("job", sorted(PLANS))
def test_plan_json_shows_exact_input_and_both_output_figures(reviews: Warehouse, job: str) -> None:
    counts = reviews.cli_json("plan", str(EXAMPLES / f"{job}.sql"))[0]["counts"]
    expected = PLANS[job]
    assert {k: counts[k] for k in expected if not k.startswith("cost")} == {
        k: v for k, v in expected.items() if not k.startswith("cost")}
    assert counts["cost_usd_expected"] == pytest.approx(expected["cost_usd_expected"])
    assert counts["cost_usd_upper_bound"] == pytest.approx(expected["cost_usd_upper_bound"])
    # The figures scripts read before 0.3 are the upper bound.
    assert counts["est_cost_usd"] == counts["cost_usd_upper_bound"]
    assert counts["est_output_tokens"] == counts["est_output_tokens_upper_bound"]


def test_plan_table_names_the_methods(reviews: Warehouse) -> None:
    out = reviews.cli("plan", str(EXAMPLES / "review_sentiment_columns.sql")).output
    assert "36,213" in out and "(exact)" in out and "typical answer" in out
    assert "cost, expected" in out and "cost, upper bound" in out


def test_input_tokens_equal_the_services_count_and_the_view_shows_estimate_vs_actual(reviews: Warehouse) -> None:
    reviews.cli("run", str(EXAMPLES / "review_sentiment_columns.sql"), "--wait", "--poll-interval", "0.05")
    [row] = reviews.rows("SELECT * FROM warehouse_batch.estimate_vs_actual")
    assert row["job_name"] == "review_sentiment_columns" and row["complete"]
    assert (row["requests_sent"], row["requests_answered"]) == (196, 196)
    assert row["est_input_tokens"] == row["input_tokens"] == 36213  # the emulator bills as the service does
    assert row["est_output_expected"] == 6468 and row["est_output_upper_bound"] == 50176
    assert abs(row["cost_error"]) < 0.10 and row["cost_usd"] <= row["est_cost_usd_upper_bound"]
    status = reviews.cli_json("status", "review_sentiment_columns")[0]
    assert status["estimates"][0]["est_input_tokens"] == 36213 and status["estimates"][0]["complete"]
    assert "estimate vs actual" in reviews.cli("status", "review_sentiment_columns").output


def test_expected_output_learns_from_the_jobs_answers(warehouse: Warehouse, tmp_path: Path) -> None:
    reviews = warehouse
    job = write_job(tmp_path / "faq.sql", {"name": "faq", "model": "gpt-4o-mini", "system": "Answer briefly."},
                    "SELECT id AS custom_id, 'question ' || id AS prompt FROM range(10) t(id)")
    first = reviews.cli_json("plan", str(job))[0]["counts"]
    assert first["est_output_tokens_expected"] == 10 * priors.FREE_TEXT_TOKENS
    reviews.cli("run", str(job), "--wait", "--poll-interval", "0.05")
    actual = reviews.sql("SELECT avg(output_tokens) FROM warehouse_batch.results")[0][0]
    more = write_job(tmp_path / "faq.sql", {"name": "faq", "model": "gpt-4o-mini", "system": "Answer briefly."},
                     "SELECT id AS custom_id, 'question ' || id AS prompt FROM range(20) t(id)")
    counts = reviews.cli_json("plan", str(more))[0]["counts"]
    assert counts["to_submit"] == 10
    assert counts["output_tokens_method"] == "mean of 10 answer(s) of this job"
    assert counts["est_output_tokens_expected"] == round(actual * 10)
    # Another job with the same model and schema (and another system prompt) learns from them too.
    other = write_job(tmp_path / "other.sql", {"name": "other", "model": "gpt-4o-mini", "system": "Be brief."},
                      "SELECT id AS custom_id, 'another ' || id AS prompt FROM range(5) t(id)")
    assert (reviews.cli_json("plan", str(other))[0]["counts"]["output_tokens_method"]
            == "mean of 10 answer(s) of other jobs with this model and schema")


# -- guards ---------------------------------------------------------------------------------------
def _faq(tmp_path: Path, **options: object) -> Path:
    """20 questions, free text up to 1,000 tokens: expected cost far below the upper bound."""
    return write_job(tmp_path / "faq.sql", {"name": "faq", "model": "gpt-4o-mini", "max_tokens": 1000, **options},
                     "SELECT id AS custom_id, 'question ' || id AS prompt FROM range(20) t(id)")


def test_max_cost_usd_compares_the_expected_cost_by_default(warehouse: Warehouse, tmp_path: Path) -> None:
    counts = warehouse.cli_json("plan", str(_faq(tmp_path)))[0]["counts"]
    expected, upper = counts["cost_usd_expected"], counts["cost_usd_upper_bound"]
    assert expected < upper
    result = warehouse.cli("run", str(_faq(tmp_path)), "--max-cost-usd", str(expected * 0.9), expect=3)
    assert "expected cost is over max_cost_usd" in result.output and "cost_guard: expected" in result.output
    assert f"${expected:.6f} expected, ${upper:.6f} upper bound" in result.output
    assert warehouse.counters()["files_uploaded"] == 0
    # Between the two figures: the default guard lets it through.
    warehouse.cli("run", str(_faq(tmp_path)), "--max-cost-usd", str((expected + upper) / 2))
    assert warehouse.counters()["batches_created"] == 1


def test_cost_guard_upper_bound_refuses_what_only_the_bound_exceeds(warehouse: Warehouse, tmp_path: Path) -> None:
    counts = warehouse.cli_json("plan", str(_faq(tmp_path)))[0]["counts"]
    between = (counts["cost_usd_expected"] + counts["cost_usd_upper_bound"]) / 2
    result = warehouse.cli("run", str(_faq(tmp_path, cost_guard="upper_bound")), "--max-cost-usd", str(between), expect=3)
    assert "upper bound cost is over max_cost_usd" in result.output and "nothing was sent" in result.output
    result = warehouse.cli("run", str(_faq(tmp_path)), "--cost-guard", "upper_bound", "--max-cost-usd", str(between),
                           expect=3)
    assert "cost_guard: upper_bound" in result.output
    assert warehouse.counters()["files_uploaded"] == 0
    result = warehouse.cli("run", str(_faq(tmp_path)), "--cost-guard", "worst", expect=2)
    assert "worst" in result.output


# -- the daily budget ---------------------------------------------------------------------------
def test_daily_budget_counts_todays_spend_and_what_is_in_flight(warehouse: Warehouse, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    one = write_job(tmp_path / "one.sql", {"name": "one", "model": "gpt-4o-mini", "max_tokens": 50},
                    "SELECT id AS custom_id, 'first ' || id AS prompt FROM range(20) t(id)")
    two = write_job(tmp_path / "two.sql", {"name": "two", "model": "gpt-4o-mini", "max_tokens": 50},
                    "SELECT id AS custom_id, 'second ' || id AS prompt FROM range(20) t(id)")
    cost_one = warehouse.cli_json("plan", str(one))[0]["counts"]["cost_usd_expected"]
    cost_two = warehouse.cli_json("plan", str(two))[0]["counts"]["cost_usd_expected"]
    # Stored in the warehouse, so dbt and every client see it.
    assert warehouse.cli_json("budget", str(cost_one * 1.2))["daily_budget_usd"] == pytest.approx(cost_one * 1.2)
    warehouse.emulator.configure(validation_delay=10, time_scale=0)  # the first run stays in flight
    warehouse.cli("run", str(one))
    info = warehouse.cli_json("budget")
    assert info["in_flight_usd"] == pytest.approx(cost_one) and info["spent_today_usd"] == 0
    result = warehouse.cli("run", str(two), expect=3)
    assert "daily budget" in result.output and "is in flight" in result.output and "nothing was sent" in result.output
    assert warehouse.counters()["batches_created"] == 1
    # Once answered, the spend is actual (and the second job's expected output learns from those answers).
    warehouse.emulator.advance(11)
    warehouse.cli("collect", "one", "--wait", "--poll-interval", "0.05")
    info = warehouse.cli_json("budget")
    spent = info["spent_today_usd"]
    assert info["in_flight_usd"] == 0 and spent == pytest.approx(warehouse.sql(
        "SELECT sum(cost_usd) FROM warehouse_batch.result_costs")[0][0])
    cost_two = warehouse.cli_json("plan", str(two))[0]["counts"]["cost_usd_expected"]
    warehouse.cli("budget", str((spent + cost_two) * 0.95))
    result = warehouse.cli("run", str(two), expect=3)
    assert f"today (UTC) ${spent:.6f} was spent" in result.output
    # The flag and the environment override the stored setting; --clear removes it.
    monkeypatch.setenv("WAREHOUSE_BATCH_DAILY_BUDGET_USD", "0.0000001")
    warehouse.cli("run", str(two), expect=3)
    warehouse.cli("run", str(two), "--daily-budget-usd", str((spent + cost_two) * 1.05))
    assert warehouse.counters()["batches_created"] == 2
    monkeypatch.delenv("WAREHOUSE_BATCH_DAILY_BUDGET_USD")
    assert warehouse.cli_json("budget", "--clear")["daily_budget_usd"] is None


def test_a_bad_budget_is_a_configuration_error(warehouse: Warehouse, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAREHOUSE_BATCH_DAILY_BUDGET_USD", "lots")
    result = warehouse.cli("run", str(_faq(tmp_path)), expect=2)
    assert "WAREHOUSE_BATCH_DAILY_BUDGET_USD must be a number" in result.output


# -- run --sample -------------------------------------------------------------------------------
SIXTY = ("SELECT id AS custom_id, 'question ' || id AS prompt, "
         "CASE WHEN id % 3 = 0 THEN 'gpt-4o' ELSE 'gpt-4o-mini' END AS model FROM range(60) t(id)")


def test_sample_sends_exactly_n_then_the_full_run_sends_the_rest(warehouse: Warehouse, tmp_path: Path) -> None:
    job = write_job(tmp_path / "sixty.sql", {"name": "sixty", "max_tokens": 20}, SIXTY)
    report = warehouse.cli_json("run", str(job), "--sample", "20", "--seed", "7", "--poll-interval", "0.05")[0]
    received = warehouse.counters()["custom_ids_received"]
    assert len(received) == 20 and set(received.values()) == {1}
    sample = report["sample"]
    assert report["counts"]["sample_size"] == 20 and report["counts"]["to_submit"] == 20
    assert (sample["requests"], sample["answered"], sample["full_requests"]) == (20, 20, 60)
    assert sample["actual_cost_usd"] > 0 and sample["extrapolated_cost_usd"] > sample["actual_cost_usd"]
    assert 0 < len(sample["answers"]) <= sampling.ANSWERS_SHOWN and sample["answers"][0]["status"] == "completed"
    # Stratified by model: 20 of 60 with a third on gpt-4o.
    assert dict(warehouse.sql("SELECT model, count(*) FROM sixty WHERE status = 'completed' GROUP BY ALL")) == {
        "gpt-4o": 7, "gpt-4o-mini": 13}
    assert warehouse.sql("SELECT count(*) FROM sixty WHERE status = 'pending'") == [(40,)]
    [run] = warehouse.rows("SELECT sample_size, requests_sent, complete FROM warehouse_batch.estimate_vs_actual")
    assert run == {"sample_size": 20, "requests_sent": 20, "complete": True}
    # The full run pays only for the rest.
    warehouse.cli("run", str(job), "--wait", "--poll-interval", "0.05")
    received = warehouse.counters()["custom_ids_received"]
    assert len(received) == 60 and set(received.values()) == {1}
    assert warehouse.sql("SELECT status, count(*) FROM sixty GROUP BY ALL") == [("completed", 60)]
    # The report's estimate-vs-actual (per job, over its own runs' results only) is the view's.
    [status] = warehouse.cli_json("status", "sixty")
    view = warehouse.rows("SELECT * EXCLUDE (job_name) FROM warehouse_batch.estimate_vs_actual "
                          "WHERE job_name = 'sixty' ORDER BY started_at DESC")
    assert len(status["estimates"]) == len(view) == 2
    for reported, expected in zip(status["estimates"], view):
        assert reported.keys() == expected.keys()
        exact = ("run_id", "sample_size", "requests_sent", "requests_answered", "complete", "input_tokens",
                 "output_tokens", "est_input_tokens")
        assert {k: reported[k] for k in exact} == {k: expected[k] for k in exact}
        assert reported["cost_usd"] == pytest.approx(expected["cost_usd"]) and reported["cost_usd"] > 0


def test_sample_is_seeded_and_says_it_was_a_sample(warehouse: Warehouse, tmp_path: Path) -> None:
    job = write_job(tmp_path / "sixty.sql", {"name": "sixty", "max_tokens": 20}, SIXTY)
    out = warehouse.cli("run", str(job), "--sample", "5", "--poll-interval", "0.05").output
    assert "a sample of 5 request(s)" in out and "extrapolated" in out and "a few answers of the sample" in out
    first = set(warehouse.counters()["custom_ids_received"])
    warehouse.emulator.reset()
    warehouse.sql("DELETE FROM warehouse_batch.results")  # forget the answers: the same seed picks the same
    warehouse.cli("run", str(job), "--sample", "5", "--poll-interval", "0.05")
    assert set(warehouse.counters()["custom_ids_received"]) == first
    result = warehouse.cli("run", str(job), "--sample", "5", "--no-cache", expect=3)
    assert "--sample needs the cache" in result.output


def test_allocation_is_proportional_with_one_per_model() -> None:
    assert sampling.allocate({"a": 40, "b": 20}, 20) == {"a": 13, "b": 7}
    assert sampling.allocate({"a": 1000, "b": 1}, 10) == {"a": 9, "b": 1}
    assert sampling.allocate({"a": 3, "b": 2}, 50) == {"a": 3, "b": 2}
    assert sum(sampling.allocate({"a": 5, "b": 5, "c": 5}, 2).values()) == 2


# -- large jobs: a sample with a stated bound, a safe per-request figure --------------------------
def test_large_jobs_count_a_sample_with_an_error_bound(warehouse: Warehouse, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Half English, half Chinese: bytes/4 over-counts the one and under-counts the other.
    query = ("SELECT id AS custom_id, CASE WHEN id % 2 = 0 THEN 'Please summarise review number ' || id "
             "ELSE '这个产品的质量非常好，我很满意，编号 ' || id END AS prompt FROM range(400) t(id)")
    job = write_job(tmp_path / "mixed.sql", {"name": "mixed", "model": "gpt-4o-mini"}, query)
    exact = warehouse.cli_json("plan", str(job))[0]["counts"]
    assert exact["input_tokens_method"] == "exact"
    monkeypatch.setattr(estimates, "EXACT_LIMIT", 100)
    monkeypatch.setattr(estimates, "SAMPLE_SIZE", 50)
    sampled = warehouse.cli_json("plan", str(job))[0]["counts"]
    method = sampled["input_tokens_method"]
    assert method.startswith("sample of 50, ±") and method.endswith("%")
    assert abs(sampled["est_input_tokens"] / exact["est_input_tokens"] - 1) <= float(method.split("±")[1][:-1]) / 100
    # Recorded per request for shard budgets: never below the exact count, even for the Chinese rows.
    warehouse.emulator.configure(validation_delay=10, time_scale=0)
    warehouse.cli("run", str(job))
    bodies = warehouse.rows(
        "SELECT r.est_input_tokens, q.prompt FROM warehouse_batch.requests AS r "
        "JOIN warehouse_batch.mixed__rows AS q ON q.__wb_request_hash = r.request_hash")
    for row in bodies:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": row["prompt"]}]}
        assert row["est_input_tokens"] >= tokens.count_request(body, tokens.CHAT)


# -- priors ---------------------------------------------------------------------------------------
SCHEMA = {**SENTIMENT_JSON, "properties": {
    **SENTIMENT_JSON["properties"], "when": {"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}]}}}


def test_typical_answer_of_a_schema() -> None:
    assert priors.typical_answer(SCHEMA) == {
        "sentiment": "Positive", "confidence": 0.85, "key_phrases": ["typical short phrase"] * 3, "when": "2024-05-17"}


@pytest.mark.parametrize("schema, bound", [
    ({"type": "string", "enum": ["yes", "no"]}, 10),
    ({"type": "object", "properties": {"ok": {"type": "boolean"}}}, 2 + 4 * 2 + 2 + 5),
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 2}, 2 + 2 * 25),
    ({"type": "string", "maxLength": 3}, 2 + 18),
    (SCHEMA, None),  # key_phrases' strings have no maxLength
])
def test_schema_bound(schema: dict, bound: int | None) -> None:
    assert priors.schema_bound(schema) == bound


@pytest.mark.parametrize("system, labels", [
    ("Classify the sentiment of this product review as Positive, Neutral or Negative.", ("Positive", "Neutral", "Negative")),
    ("Answer 'yes', 'no', or 'unsure'.", ("yes", "no", "unsure")),
    ("Reply with either spam or ham.", ("spam", "ham")),
    ("Summarise the review in one sentence.", None),
    (None, None),
])
def test_label_options(system: str | None, labels: tuple[str, ...] | None) -> None:
    assert priors.label_options(system) == labels


def test_reasoning_models_expect_reasoning_tokens() -> None:
    plain, _ = priors.expected_output("/v1/chat/completions", "gpt-4o-mini", system=None, schema=None, params={})
    low, method = priors.expected_output("/v1/chat/completions", "o4-mini", system=None, schema=None,
                                         params={"reasoning_effort": "low"})
    assert plain == priors.FREE_TEXT_TOKENS and low == plain + priors.REASONING_TOKENS["low"] and "reasoning" in method
    assert priors.upper_output("/v1/responses", "gpt-5-mini", schema=None, params={}) == (
        256 + priors.REASONING_UPPER_FACTOR * priors.REASONING_TOKENS["medium"])
    assert priors.upper_output("/v1/embeddings", "text-embedding-3-small", schema=None, params={}) == 0
