-- pgbench script (figure 5, measured side): one pre-signed, distinct note delivery
-- through halo_itsm.ingest_webhook (verify, parse, deduplicate, add the timeline entry).
SELECT halo_itsm.ingest_webhook(:key, d.headers, d.body)
  FROM bench.deliveries d WHERE d.n = (SELECT nextval('bench.ingest_seq'));
