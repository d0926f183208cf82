-- pgbench script (figure 6, claim): what the worker's database side does for one
-- ticket, in a database without a worker: the insert queues it, _claim takes it,
-- _record marks it delivered. pgbench -r reports each statement's latency.
\set r random(1, 9000000000000000)
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('F' || :client_id || '-' || :r, 'Flat cost', 'high');
SELECT outbox_id, claim_token FROM halo_itsm._claim(1, 1, '{}') \gset
SELECT halo_itsm._record(:outbox_id, 'created', :outbox_id, 201, NULL, 0, false, :claim_token);
