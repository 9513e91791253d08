-- How the distinct requests of a compiled stage ({stage}) split: answered already (cached), in a
-- live batch (in flight), or to be sent.
WITH hashes AS (SELECT DISTINCT __wb_request_hash AS h FROM {stage})
SELECT count_if(res.request_hash IS NOT NULL) AS cached,
       count_if(res.request_hash IS NULL AND b.state IS NOT NULL AND b.state <> 'collected') AS in_flight,
       count_if(res.request_hash IS NULL AND (b.state IS NULL OR b.state = 'collected')) AS to_submit
FROM hashes
LEFT JOIN warehouse_batch.results AS res ON res.request_hash = hashes.h
LEFT JOIN warehouse_batch.requests AS req ON req.request_hash = hashes.h
LEFT JOIN warehouse_batch.batches AS b ON b.shard_id = req.shard_id
