-- pgbench script (figure 2, the load beside the latency probe): one case into
-- halo_itsm.cases for integration :iid, as fast as the clients can.
\set r random(1, 9000000000000000)
INSERT INTO halo_itsm.cases (sid, title, description, severity, integration_id)
VALUES ('B' || :client_id || '-' || :r, 'Benchmark load', 'Inserted by pgbench', 'high', :iid);
