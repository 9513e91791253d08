-- One request body per distinct request of {picked} (a table of request_hash), built from any one
-- of the stage's rows that asks for it. Placeholders: {stage}, {picked}, {body} (over alias q).
WITH one_row AS (
    SELECT __wb_request_hash AS request_hash, min(__wb_cid) AS cid FROM {stage}
    WHERE __wb_request_hash IN (SELECT request_hash FROM {picked}) GROUP BY ALL
)
SELECT one_row.request_hash, {body} AS body
FROM one_row JOIN {stage} AS q ON q.__wb_cid = one_row.cid
