-- pgbench script (figure 1, baseline): the same insert into bench.cases_plain, a copy
-- of halo_itsm.cases (columns, defaults, checks, indexes, foreign key) without triggers.
\set r random(1, 9000000000000000)
INSERT INTO bench.cases_plain (sid, title, description, severity)
VALUES ('P' || :client_id || '-' || :r, 'Benchmark case', 'Inserted by pgbench', 'high');
