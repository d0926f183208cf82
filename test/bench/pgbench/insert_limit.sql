-- pgbench script (figure 1, the physical limit): the baseline's insert plus one row into
-- bench.intake, a table without indexes, in the same statement and transaction: the
-- least a queue written in the inserting transaction can cost.
\set r random(1, 9000000000000000)
WITH c AS (
    INSERT INTO bench.cases_plain (sid, title, description, severity)
    VALUES ('P' || :client_id || '-' || :r, 'Benchmark case', 'Inserted by pgbench', 'high')
    RETURNING id, integration_id)
INSERT INTO bench.intake (case_id, integration_id) SELECT id, integration_id FROM c;
