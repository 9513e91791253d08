"""`GET /`: the read-only status page, rendered on the server from the latest snapshot.

One HTML document with inline CSS: no scripts, no build step, no external assets (it works
offline and behind any proxy). It refreshes itself every 15 s. Every value from the warehouse
(job names, errors written by analysts' queries) is escaped.
"""

from __future__ import annotations

import html
import time
from typing import Any

from warehouse_batch.cost import usd
from warehouse_batch.worker.snapshot import Snapshot, Stats

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2330;background:#fafbfc}
h1{font-size:1.3rem;margin:0 0 .2rem}h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
.muted{color:#667}.tiles{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.tile{background:#fff;border:1px solid #dde;border-radius:6px;padding:.6rem 1rem;min-width:9rem}
.tile b{display:block;font-size:1.3rem}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border-bottom:1px solid #e4e6eb;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{width:12rem;height:.8rem;background:#e4e6eb;border-radius:4px;overflow:hidden;display:flex}
.bar span{display:block;height:100%}.ok{background:#2e9e5b}.bad{background:#d0453b}.wait{background:#e0a526}
.state{padding:.05rem .4rem;border-radius:3px;background:#eef;font-size:.85em}
.err{color:#a12b22;white-space:pre-wrap;max-width:40rem}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _usd(value: float | None) -> str:
    return "—" if value is None else usd(value)


def _eta(seconds: Any) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    return f"{seconds // 3600}h {seconds % 3600 // 60}m" if seconds >= 3600 else \
        f"{seconds // 60}m {seconds % 60}s" if seconds >= 60 else f"{seconds}s"


def _bar(job: dict[str, Any]) -> str:
    total = job["row_count"] or 0
    if not total:
        return '<div class="bar" role="progressbar" aria-valuenow="0"></div>'
    bad = (job["failed"] or 0) + (job["expired"] or 0) + (job["cancelled"] or 0)
    parts = [("ok", job["completed"] or 0), ("bad", bad), ("wait", job["pending"] or 0)]
    spans = "".join(f'<span class="{cls}" style="width:{100 * n / total:.2f}%"></span>' for cls, n in parts if n)
    done = total - (job["pending"] or 0)
    return (f'<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="{total}" '
            f'aria-valuenow="{done}">{spans}</div>')


def render(snap: Snapshot, stats: Stats, *, location: str) -> str:
    jobs_rows = []
    for job in snap.jobs:
        pct = job["percent_done"]
        jobs_rows.append(
            f'<tr data-job="{_e(job["job_name"])}"><td><b>{_e(job["job_name"])}</b>'
            f'{"" if job["defined_in_sql"] else " <span class=muted>(job file)</span>"}</td>'
            f'<td><span class="state">{_e(job["state"] or "—")}</span></td>'
            f'<td>{_e(job["defined_by"] or "—")}{" v" + _e(job["version"]) if job["version"] else ""}</td>'
            f'<td>{_bar(job)}<span class="muted pct">{"—" if pct is None else f"{float(pct):g}%"}</span></td>'
            f'<td class="num rows">{job["row_count"]:,}</td><td class="num completed">{job["completed"]:,}</td>'
            f'<td class="num failed">{job["failed"] + job["expired"] + job["cancelled"]:,}</td>'
            f'<td class="num pending">{job["pending"]:,}</td>'
            f'<td class="num eta">{_eta(job["eta_seconds"])}</td>'
            f'<td class="num spend">{_usd(float(job["spend_usd"] or 0))}</td>'
            f'<td class="num today">{_usd(snap.spend_today_by_job.get(job["job_name"], 0.0))}</td>'
            f'<td class="num remaining">{_usd(float(job["est_remaining_usd"] or 0))}</td></tr>')
    failures = "".join(
        f'<tr><td>{_e(f["job_name"])}</td><td class="code">{_e(f["error_code"])}</td>'
        f'<td class="num">{int(f["row_count"]):,}</td></tr>' for f in snap.failures
    ) or '<tr><td colspan="3" class="muted">none</td></tr>'
    errors = "".join(
        f'<tr><td>{_e(j["job_name"])}</td><td class="err">{_e(j["last_error"])}</td></tr>'
        for j in snap.jobs if j["last_error"]
    ) or '<tr><td colspan="2" class="muted">none</td></tr>'
    totals = snap.totals
    live = sum(n for s, n in snap.batches_by_state.items() if s != "collected")
    as_of = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(snap.taken_at)) if snap.taken_at else "not yet"
    worker_error = (f'<p class="err">The last step failed: {_e(stats.last_step_error)}</p>'
                    if stats.last_step_error else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="15">
<link rel="icon" href="data:,"><title>warehouse_batch worker</title><style>{_CSS}</style></head>
<body>
<h1>warehouse_batch worker</h1>
<p class="muted">{_e(location)} · figures as of {as_of}</p>{worker_error}
<div class="tiles">
<div class="tile" id="spend-today">Spend today (UTC)<b>{_usd(totals.get("spend_today_usd", 0.0))}</b></div>
<div class="tile" id="spend-total">Spend, all time<b>{_usd(totals.get("spend_usd", 0.0))}</b></div>
<div class="tile" id="live-batches">Live batches<b>{live:,}</b></div>
<div class="tile" id="requests-answered">Requests answered<b>{int(totals.get("requests_answered", 0)):,}</b></div>
<div class="tile" id="requests-failed">Requests failed<b>{int(totals.get("requests_failed", 0)):,}</b></div>
</div>
<h2>Jobs</h2>
<table id="jobs"><thead><tr><th>job</th><th>state</th><th>defined by</th><th>progress</th><th>rows</th>
<th>completed</th><th>failed</th><th>pending</th><th>ETA</th><th>spend</th><th>today</th><th>est. remaining</th></tr></thead>
<tbody>{"".join(jobs_rows) or '<tr><td colspan="12" class="muted">no jobs yet</td></tr>'}</tbody></table>
<h2>Failures by error code</h2>
<table id="failures"><thead><tr><th>job</th><th>error code</th><th>rows</th></tr></thead><tbody>{failures}</tbody></table>
<h2>Last errors</h2>
<table id="errors"><thead><tr><th>job</th><th>error</th></tr></thead><tbody>{errors}</tbody></table>
</body></html>
"""
