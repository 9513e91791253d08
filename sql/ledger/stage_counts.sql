-- How the distinct requests of a compiled stage ({stage}) split: answered already (cached), in a
-- live batch (in flight), or to be sent.
-- A request sits in at most one shard not yet collected: the live memberships are few rows.
WITH hashes AS (SELECT DISTINCT __wb_request_hash AS h FROM {stage}),
live AS (
    SELECT DISTINCT rs.request_hash FROM warehouse_batch.request_shards AS rs
    JOIN warehouse_batch.batches AS b ON b.shard_id = rs.shard_id WHERE b.state <> 'collected'
)
SELECT count_if(res.request_hash IS NOT NULL) AS cached,
       count_if(res.request_hash IS NULL AND live.request_hash IS NOT NULL) AS in_flight,
       count_if(res.request_hash IS NULL AND live.request_hash IS NULL) AS to_submit
FROM hashes
LEFT JOIN warehouse_batch.results AS res ON res.request_hash = hashes.h
LEFT JOIN live ON live.request_hash = hashes.h
