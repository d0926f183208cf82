-- pgbench script (figure 1, measured side): one case into halo_itsm.cases, whose
-- trigger queues a ticket for the enabled integration and wakes the worker at commit.
\set r random(1, 9000000000000000)
INSERT INTO halo_itsm.cases (sid, title, description, severity)
VALUES ('P' || :client_id || '-' || :r, 'Benchmark case', 'Inserted by pgbench', 'high');
