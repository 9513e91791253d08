"""Real dbt: types and descriptions written once in schema.yml become the answer's schema, the
rendered request can be previewed, enforced contracts are honoured, every column has docs."""

from __future__ import annotations

import json
import re

from tests.dbt.conftest import DbtProject

MODEL = """{{ config(materialized='llm_batch', model='gpt-4o-mini', system='Classify the review.', max_tokens=40) }}
select review_id as custom_id, review_text as prompt from {{ ref('stg_reviews') }}
"""
YML = """version: 2
models:
  - name: review_typed
    columns:
      - name: custom_id
        description: The review id.
      - name: mood
        data_type: "ENUM('good', 'bad')"
        description: Whether the reviewer liked the product.
      - name: score
        data_type: double
        description: How much, from 0 to 1.
"""


def test_yml_types_and_descriptions_define_the_answer_contracts_are_checked(project: DbtProject) -> None:
    project.dbt("seed")
    project.add_model("llm/review_typed.sql", MODEL)
    project.add_model("llm/review_typed.yml", YML)
    project.dbt("run", "--select", "stg_reviews")

    # The rendered request, from dbt: system prompt and the JSON Schema built from the yml.
    project.dbt("run", "--select", "review_typed", "--vars", "{llm_batch_preview: 1}")
    assert project.requests == 0
    shown = [m for m in project.messages if "preview, custom_id" in m]
    assert len(shown) == 1
    body = json.loads(shown[0].split(":\n", 1)[1])
    assert body["messages"][0] == {"role": "system", "content": "Classify the review."}
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["mood"] == {"description": "Whether the reviewer liked the product.",
                                            "type": "string", "enum": ["good", "bad"]}
    assert project.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'review_typed'") == [(0,)]

    project.dbt("run", "--select", "review_typed")
    types = {name: kind for name, kind, *_ in project.sql("DESCRIBE review_typed")}
    assert types["mood"] == "ENUM('good', 'bad')" and types["score"] == "DOUBLE"
    comments = dict(project.sql("SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'review_typed'"))
    assert comments["mood"] == "Whether the reviewer liked the product."
    assert comments["status"].startswith("completed, pending") and comments["published_at"]

    # An enforced contract: the yml must give every column its type; a wrong one is refused by dbt.
    columns = [(name, kind) for name, kind, *_ in project.sql("DESCRIBE review_typed")]
    described = "\n".join(f"      - name: {n}\n        data_type: \"{k}\"" for n, k in columns
                          if n not in ("mood", "score"))
    contract = YML.replace("    columns:", "    config:\n      contract: {enforced: true}\n    columns:", 1) \
        .replace("      - name: custom_id\n        description: The review id.\n", "") + described + "\n"
    project.add_model("llm/review_typed.yml", contract)
    project.dbt("run", "--select", "review_typed")
    wrong = re.sub(r'(name: attempts\n        data_type: )"[^"]+"', r'\1"VARCHAR"', contract)
    assert wrong != contract
    project.add_model("llm/review_typed.yml", wrong)
    project.dbt("run", "--select", "review_typed", ok=False)
    log = project.log()
    assert "contract" in log.lower() and "attempts" in log
