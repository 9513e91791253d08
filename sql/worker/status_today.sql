-- Today's spend (UTC day) per job.
SELECT job_name, sum(cost_usd) AS cost_usd
FROM warehouse_batch.daily_spend
WHERE day = CAST(timezone('UTC', now()) AS DATE)
GROUP BY job_name
