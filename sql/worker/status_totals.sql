-- Totals for the metrics: requests sent in batches, answered, failed; spend; the UTC day's spend.
SELECT
    (SELECT coalesce(sum(line_count), 0) FROM warehouse_batch.batches WHERE batch_id IS NOT NULL) AS requests_sent,
    (SELECT count(*) FROM warehouse_batch.results WHERE status = 'completed') AS requests_answered,
    (SELECT count(*) FROM warehouse_batch.results WHERE status <> 'completed') AS requests_failed,
    (SELECT coalesce(sum(cost_usd), 0) FROM warehouse_batch.result_costs) AS spend_usd,
    (SELECT coalesce(sum(cost_usd), 0) FROM warehouse_batch.daily_spend
     WHERE day = CAST(timezone('UTC', now()) AS DATE)) AS spend_today_usd
