"""Shared benchmark data: the reviews table, the job over it, and batch output files.

Everything is generated inside DuckDB from a seed (DuckDB's `hash()` of the row number, the seed
and a salt), so the same `--rows`/`--seed` give the same rows on every run (row order in the
table may differ; ids say which is which). The reviews table is
built once and cached under the cache directory (default `$TMPDIR/warehouse_batch_bench`).

The data imitates the dataset of `shared/reference/performance.md`: `id VARCHAR` (`rev-000000`…),
`review_text VARCHAR` of 200–600 characters with the same hazards (`"` in ≈6.3% of rows, newline
≈3.1%, emoji ≈4%, any non-ASCII ≈20%, and some backslashes, tabs, CJK, curly quotes, `<b>`,
`{braces}`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import duckdb

DEFAULT_SEED = 42
MODEL = "gpt-4o-mini"
ENDPOINT = "/v1/chat/completions"
SYSTEM = "Classify the sentiment of this product review as Positive, Neutral or Negative, with a confidence."
SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["Positive", "Neutral", "Negative"]},
        "confidence": {"type": "number"},
    },
    "required": ["sentiment", "confidence"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "sentiment", "strict": True, "schema": SCHEMA}}
QUERY = "SELECT id AS custom_id, review_text AS prompt FROM src.reviews"

_WORDS = (
    "the product was great good bad okay fine terrible excellent quality price value shipping fast slow "
    "arrived broken works perfectly would buy again not recommend my wife husband kids love it hate this "
    "battery life screen size color fits well small large cheap expensive after two weeks months use "
    "customer service helpful rude refund return easy hard setup instructions clear confusing sturdy "
    "flimsy plastic metal comfortable heavy light loud quiet smell strong weak design looks nice ugly "
    "worth money waste of time five stars one star overall happy disappointed expected better than "
    "described picture smaller bigger packaging damaged box gift daughter son birthday kitchen office "
    "daily every day still working stopped after replaced warranty seller responded quickly issue "
    "problem solved definitely maybe really very quite pretty so much too little enough and but or "
    "because however also just only even though while when then since before a an in on at for with"
).split()

# (salt, per-mille probability, fragment): each row gets each fragment with that probability.
_HAZARDS = (
    (11, 63, ' she said "exactly as described" and '),
    (12, 31, "\n"),
    (13, 40, " 😀👍 "),
    (14, 60, " café naïve über "),
    (15, 40, " 日本語のレビュー "),
    (16, 40, " it’s “smart” "),
    (17, 20, " ñandú Ω "),
    (18, 5, " C:\\path\\file "),
    (19, 5, "\t"),
    (20, 5, " <b>bold</b> "),
    (21, 5, " {braces} "),
)


def cache_dir(explicit: str | None = None) -> Path:
    path = Path(explicit or os.environ.get("WB_BENCH_CACHE") or Path(tempfile.gettempdir()) / "warehouse_batch_bench")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


SHORT_WINDOWS, SHORT_WORDS = 1 << 20, 8  # four of these start every text (they make it unique)
LONG_WINDOWS, LONG_WORDS = 1 << 16, 80  # and one of these fills it up to its length
DATA_VERSION = 2  # part of the cache file name: bump when the generated rows change


def reviews_db(rows: int, *, seed: int = DEFAULT_SEED, directory: str | Path | None = None) -> Path:
    """A DuckDB file with table `reviews(id, review_text)` of `rows` rows; built once, then cached.

    Vectorized: tables of word windows (2^20 of 8 hash-picked words, 2^16 of 80) are built once;
    each row's text is four short windows and one long one picked by hash (joins: the first ~150
    characters alone have ≈10^18 combinations, so texts are unique in practice), cut to 200–600
    characters, with the hazard fragments inserted as before. The table is stored uncompressed
    (DuckDB's string compression was most of the time). Version 1 picked 130 words per row (~50
    minutes for 10M rows under load); version 2's rows differ from version 1's at the same seed."""
    path = cache_dir(str(directory) if directory else None) / f"reviews_{rows}_s{seed}_v{DATA_VERSION}.duckdb"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    words = "[" + ", ".join(_lit(w) for w in _WORDS) + "]"
    width = max(6, len(str(rows - 1)))
    fragments = " || ".join(
        f"CASE WHEN hash(i, {salt}, {seed}) % 1000 < {pm} THEN {_lit(frag)} ELSE '' END" for salt, pm, frag in _HAZARDS
    )

    def windows(name: str, count: int, n_words: int, salt: int) -> str:
        return f"""CREATE TEMP TABLE {name} AS
                   SELECT k, array_to_string(list_transform(range({n_words}),
                              lambda j: {words}[1 + CAST(hash(k * 128 + j, {seed}, {salt}) % {len(_WORDS)} AS INTEGER)]), ' ') AS t
                   FROM range({count}) AS r(k)"""

    # hash(i, n, seed) for n = 1, 2, … differ by a constant in their low bits (DuckDB combines the
    # arguments' hashes), which would tie the picks together: hash one distinct value per pick.
    picks = " ".join(f"JOIN short_windows AS w{n} ON w{n}.k = hash(i * 4 + {n}, {seed}) % {SHORT_WINDOWS}"
                     for n in range(4))
    con = duckdb.connect(str(tmp))
    try:
        con.execute("SET preserve_insertion_order = false")  # rows are written in any order; ids say which
        con.execute("SET force_compression = 'uncompressed'")
        con.execute(windows("short_windows", SHORT_WINDOWS, SHORT_WORDS, 3))
        con.execute(windows("long_windows", LONG_WINDOWS, LONG_WORDS, 7))
        con.execute(
            f"""
            CREATE TABLE reviews AS
            WITH base AS (
                SELECT i,
                       200 + CAST(hash(i, 1, {seed}) % 401 AS INTEGER) AS target_len,
                       20 + CAST(hash(i, 2, {seed}) % 100 AS INTEGER) AS pos,
                       {fragments} AS frag,
                       w0.t || ' ' || w1.t || ' ' || w2.t || ' ' || w3.t || ' ' || wl.t AS body
                FROM range({int(rows)}) AS r(i) {picks}
                JOIN long_windows AS wl ON wl.k = hash(i * 4 + 3, {seed}, 6) % {LONG_WINDOWS}
            )
            SELECT 'rev-' || lpad(CAST(i AS VARCHAR), {width}, '0') AS id,
                   left(left(body, pos) || frag || substr(body, pos + 1), target_len) AS review_text
            FROM base
            """
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, path)
    return path


def data_profile(path: Path) -> dict[str, Any]:
    """Sizes and hazard shares of a cached reviews table (to compare with performance.md's)."""
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute(
            """
            SELECT count(*), min(length(review_text)), max(length(review_text)), avg(length(review_text)),
                   sum(strlen(review_text)),
                   avg(CAST(contains(review_text, '"') AS INT)), avg(CAST(contains(review_text, chr(10)) AS INT)),
                   avg(CAST(regexp_matches(review_text, '[😀👍]') AS INT)),
                   avg(CAST(strlen(review_text) <> length(review_text) AS INT))
            FROM reviews
            """
        ).fetchone()
    keys = ("rows", "min_chars", "max_chars", "mean_chars", "utf8_bytes", "share_quote", "share_newline",
            "share_emoji", "share_non_ascii")
    return dict(zip(keys, row))


OUTPUT_SCHEMA_SQL = "sentiment ENUM('Positive', 'Neutral', 'Negative'), confidence DOUBLE"


def make_job(name: str = "bench_reviews", query: str = QUERY, *, schema_mode: str = "params", **options: Any):
    """The benchmark job: chat completions, a system prompt and a strict json_schema answer format.

    schema_mode "output_schema": the job's `output_schema` option (typed output columns sentiment,
    confidence), when the library supports it; "params": `response_format` as a plain request
    parameter (the body is then exactly performance.md's request line, the output table untyped)."""
    from warehouse_batch.jobs import Job

    if schema_mode == "output_schema":
        return Job(name=name, query=query, model=MODEL, system=SYSTEM, output_schema=OUTPUT_SCHEMA_SQL, **options)
    params = {"response_format": RESPONSE_FORMAT, **options.pop("params", {})}
    return Job(name=name, query=query, model=MODEL, system=SYSTEM, params=params, **options)


_SENTINEL = "WB-BENCH-SENTINEL-PROMPT"


def sample_body(job) -> str:
    """The library's request body for a one-row query whose prompt is a sentinel (in-memory warehouse)."""
    import duckdb

    from warehouse_batch import bodies
    from warehouse_batch import compile as compiler
    from warehouse_batch.jobs import Job
    from warehouse_batch.warehouses import DuckDBWarehouse

    one = Job.from_options({**job.to_options(), "query": f"SELECT 'x' AS custom_id, '{_SENTINEL}' AS prompt"})
    store = DuckDBWarehouse(duckdb.connect(":memory:"), work_dir=Path(tempfile.gettempdir()) / "wb-bench-unused")
    spec = bodies.build(one, compiler.describe(store, one))
    return store.scalar(f"SELECT {spec.body} FROM ({one.query}) AS q")


def bench_inputs(args: Any, tag: str) -> tuple[Path, Path, str, Any]:
    """What the 1M-row scripts start from: (their run folder `<cache>/runs/<tag>_<rows>`, the
    cached reviews database, the schema mode chosen, the benchmark job)."""
    cache = cache_dir(args.cache_dir)
    src = reviews_db(args.rows, seed=args.seed, directory=cache)
    schema_mode = resolve_schema_mode(args.schema_mode)
    return cache / "runs" / f"{tag}_{args.rows}", src, schema_mode, make_job(schema_mode=schema_mode)


def resolve_schema_mode(mode: str) -> str:
    """'auto' → 'output_schema' when this library version compiles it into the body, else 'params'."""
    if mode != "auto":
        return mode
    try:
        body = sample_body(make_job(schema_mode="output_schema"))
    except Exception:  # an older library: no output_schema support
        return "params"
    return "output_schema" if '"response_format"' in body else "params"


def body_template(job) -> tuple[str, str]:
    """(prefix, suffix) around the JSON-encoded prompt in the library's body for `job`, so the
    baselines write bodies byte-identical to warehouse_batch's whatever its body format is."""
    body = sample_body(job)
    encoded = json.dumps(_SENTINEL)
    if body.count(encoded) != 1:
        raise RuntimeError(f"cannot find the prompt in the library's body: {body[:200]}")
    prefix, suffix = body.split(encoded)
    return prefix, suffix


def request_line_sql(template: tuple[str, str], id_expr: str = "id", text_expr: str = "review_text") -> str:
    """The baseline's request line as one SQL concat template, body byte-identical to warehouse_batch's.

    custom_id is the source id (no hashing), so lines are 54 bytes shorter than warehouse_batch's."""
    prefix, suffix = template
    head = ',"method":"POST","url":"' + ENDPOINT + '","body":' + prefix
    return f"""'{{"custom_id":' || to_json({id_expr}) || {_lit(head)} || to_json({text_expr}) || {_lit(suffix + "}")}"""


def body_dict(template: tuple[str, str]) -> dict[str, Any]:
    """The body as a dict whose user message content is to be replaced per row."""
    return json.loads(template[0] + json.dumps(_SENTINEL) + template[1])


# ---------------------------------------------------------------------------------------------
# Batch output files (the real chat.completion batch output shape)

ERROR_PER_MILLE_X10 = 50  # 0.5% status 400 lines (per 10,000)
LENGTH_PER_10K = 10  # 0.1% finish_reason "length" with truncated JSON content


def output_line_sql(hash_expr: str = "request_hash", seed: int = DEFAULT_SEED) -> str:
    """One output line per request, as SQL: 0.5% status-400 errors, 0.1% truncated `length` answers."""
    h = f"hash({hash_expr}, {seed})"
    sentiment = f"(['Positive','Neutral','Negative'])[1 + CAST({h} % 3 AS INTEGER)]"
    confidence = f"CAST(round(0.5 + (CAST({h} % 500 AS DOUBLE) / 1000.0), 3) AS VARCHAR)"
    content_ok = "'{\"sentiment\":\"' || " + sentiment + " || '\",\"confidence\":' || " + confidence + " || '}'"
    content_cut = "'{\"sentiment\":\"' || left(" + sentiment + ", 3)"
    bucket = f"CAST(hash({hash_expr}, {seed}, 7) % 10000 AS INTEGER)"
    prompt_tokens = f"CAST(60 + hash({hash_expr}, 8) % 120 AS VARCHAR)"
    req_id = f"'req_' || left(md5({hash_expr}), 24)"
    line_id = f"'batch_req_' || right(md5({hash_expr}), 24)"
    ok = (
        "'{\"id\":\"' || " + line_id + " || '\",\"custom_id\":\"' || " + hash_expr + " || '\",\"response\":{\"status_code\":200,"
        "\"request_id\":\"' || " + req_id + " || '\",\"body\":{\"id\":\"chatcmpl-' || left(md5(" + hash_expr + " || 'c'), 29) || "
        "'\",\"object\":\"chat.completion\",\"created\":1764115200,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":' || to_json(CASE WHEN " + bucket + f" < {LENGTH_PER_10K} THEN "
        + content_cut + " ELSE " + content_ok + " END) || ',\"refusal\":null,\"annotations\":[]},\"logprobs\":null,"
        "\"finish_reason\":\"' || CASE WHEN " + bucket + f" < {LENGTH_PER_10K} THEN 'length' ELSE 'stop' END || '\"}}],"
        "\"usage\":{\"prompt_tokens\":' || " + prompt_tokens + " || ',\"completion_tokens\":12,\"total_tokens\":' || "
        "CAST(72 + hash(" + hash_expr + ", 8) % 120 AS VARCHAR) || ',\"prompt_tokens_details\":{\"cached_tokens\":0,"
        "\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
        "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}},\"service_tier\":\"default\","
        "\"system_fingerprint\":\"fp_b705f0c291\"}},\"error\":null}'"
    )
    err = (
        "'{\"id\":\"' || " + line_id + " || '\",\"custom_id\":\"' || " + hash_expr + " || '\",\"response\":{\"status_code\":400,"
        "\"request_id\":\"' || " + req_id + " || '\",\"body\":{\"error\":{\"message\":\"This model''s maximum context length "
        "is 128000 tokens. However, your messages resulted in 131072 tokens. Please reduce the length of the messages.\","
        "\"type\":\"invalid_request_error\",\"param\":\"messages\",\"code\":\"context_length_exceeded\"}}},\"error\":null}'"
    )
    return f"CASE WHEN {bucket} >= 10000 - {ERROR_PER_MILLE_X10} THEN {err} ELSE {ok} END"


def write_output_files(con: duckdb.DuckDBPyConnection, shards_sql: str, directory: Path,
                       seed: int = DEFAULT_SEED) -> dict[str, Path]:
    """Write one shuffled output file per shard; `shards_sql` yields (shard_id, request_hash).

    Returns shard_id → path."""
    directory.mkdir(parents=True, exist_ok=True)
    con.execute(f"CREATE OR REPLACE TEMP TABLE bench_out AS SELECT shard_id, request_hash FROM ({shards_sql})")
    files = {}
    for (shard_id,) in con.execute("SELECT DISTINCT shard_id FROM bench_out ORDER BY 1").fetchall():
        path = directory / f"{shard_id}_output.jsonl"
        con.execute(
            f"""COPY (SELECT {output_line_sql(seed=seed)} AS line FROM bench_out
                      WHERE shard_id = {_lit(shard_id)} ORDER BY hash(request_hash, {seed}, 99))
                TO {_lit(str(path))} (FORMAT csv, HEADER false, QUOTE '', ESCAPE '')"""
        )
        files[shard_id] = path
    con.execute("DROP TABLE bench_out")
    return files


# ---------------------------------------------------------------------------------------------
# A provider that never leaves the machine: it accepts shards and serves pre-written output files

class LocalProvider:
    """A `BatchProvider` for the load and re-run benchmarks.

    submit phase: `upload` and `create` only hand out ids (batch id = "batch_" + shard id).
    collect phase: `retrieve` says every batch completed with output file "out-<shard id>", and
    `download` hard-links the pre-written output file into place (a copy where links fail), so
    the measured time is warehouse_batch's own loading, not a network transfer."""

    def __init__(self, outputs: dict[str, Path] | None = None, line_counts: dict[str, int] | None = None):
        self.outputs = outputs or {}
        self.line_counts = line_counts or {}
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def upload(self, path: Path, filename: str, *args: Any, **kwargs: Any) -> str:
        self._count("upload")
        return "file-" + Path(filename).stem

    name = "local"
    location = "local files"
    min_poll_interval = 0.0  # answers are on disk already: poll as often as asked

    def find_uploads(self, *args: Any, **kwargs: Any) -> dict:
        self._count("find_uploads")
        return {}

    def find_batches(self, *args: Any, **kwargs: Any) -> dict:
        self._count("find_batches")
        return {}

    def create(self, *, input_ref: str, **kwargs: Any):
        from warehouse_batch.providers import BatchInfo

        self._count("create")
        shard_id = input_ref.removeprefix("file-")
        return BatchInfo(id="batch_" + shard_id, status="in_progress", metadata=kwargs.get("metadata") or {})

    def result_files(self, info: Any) -> list[tuple[str, str]]:
        return [("output", info.output_file_id)] if info.output_file_id else []

    def delete_file(self, ref: str) -> None:
        self._count("delete_file")

    def retrieve(self, batch_id: str):
        from warehouse_batch.providers import BatchInfo

        self._count("retrieve")
        shard_id = batch_id.removeprefix("batch_")
        n = self.line_counts.get(shard_id, 0)
        return BatchInfo(id=batch_id, status="completed", output_file_id="out-" + shard_id, error_file_id=None,
                         total=n, completed=n, failed=0)

    def download(self, file_id: str, dest: Path, *args: Any, **kwargs: Any) -> Path:
        self._count("download")
        source = self.outputs[file_id.removeprefix("out-")]
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        try:
            os.link(source, dest)
        except OSError:
            import shutil

            shutil.copyfile(source, dest)
        return dest

    def cancel(self, batch_id: str):
        raise NotImplementedError


def open_store(db: Path, src: Path, work_dir: Path, *, threads: int | None = None, memory_limit: str | None = None):
    """A warehouse_batch DuckDBWarehouse on `db`, opened as the CLI opens one (its own connection, so
    the library's defaults and per-step settings apply: memory limit, spilling, one-thread steps),
    with the reviews file ATTACHed read-only as `src` on every connection it makes."""
    from warehouse_batch.warehouses import DuckDBWarehouse

    class BenchWarehouse(DuckDBWarehouse):
        def _apply_settings(self, con) -> None:  # every (re)connect: after a wait, too
            super()._apply_settings(con)
            con.execute(f"ATTACH IF NOT EXISTS '{src}' AS src (READ_ONLY)")

    return BenchWarehouse(db, work_dir=work_dir, memory_limit=memory_limit, threads=threads)


def close_store(store) -> None:
    store.close()


def run_on_emulator(run_dir: Path, src: Path, job, *, poll_interval: float, clock: list[float],
                    threads: int | None = None, memory_limit: str | None = None):
    """The timed core of the emulator benchmarks: `Runner.run(job, wait=True)` against a fresh
    in-process emulator. Sets clock[0] when timing starts (failpoint boundaries count from it);
    returns (report, seconds, emulator counters)."""
    import time

    from warehouse_batch.emulator import Emulator, EmulatorConfig
    from warehouse_batch.providers.openai import OpenAIBatchProvider
    from warehouse_batch.runner import Runner

    with Emulator(EmulatorConfig()) as emu:
        store = open_store(run_dir / "warehouse.duckdb", src, run_dir / "work", threads=threads,
                           memory_limit=memory_limit)
        provider = OpenAIBatchProvider(base_url=emu.base_url, api_key="bench")
        clock[0] = time.perf_counter()
        report = Runner(store, provider).run(job, wait=True, poll_interval=poll_interval)
        seconds = time.perf_counter() - clock[0]
        return report, seconds, emu.counters()


def prepare_submitted(directory: Path, src: Path, job, *, seed: int = DEFAULT_SEED,
                      threads: int | None = None, memory_limit: str | None = None) -> tuple[Path, dict[str, Path], dict[str, int]]:
    """A warehouse where `job` ran (compile → shard → submit to LocalProvider) and its batches are
    in flight, plus one shuffled output file per shard whose custom_ids are the request hashes.

    Returns (warehouse file, shard_id → output file, shard_id → lines). Built with the library's own
    `Runner.run`; the shard files are deleted afterwards (only the warehouse and outputs are kept)."""
    import shutil

    from warehouse_batch.runner import Runner

    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    db = directory / "warehouse.duckdb"
    store = open_store(db, src, directory / "work", threads=threads, memory_limit=memory_limit)
    try:
        Runner(store, LocalProvider()).run(job)
        outputs = write_output_files(
            store.con, "SELECT shard_id, request_hash FROM warehouse_batch.request_attempts",
            directory / "outputs", seed=seed)
        counts = dict(store.execute(
            "SELECT shard_id, count(*) FROM warehouse_batch.request_attempts GROUP BY 1").fetchall())
        store.execute("CHECKPOINT")
    finally:
        close_store(store)
    shutil.rmtree(directory / "work", ignore_errors=True)
    return db, outputs, counts
