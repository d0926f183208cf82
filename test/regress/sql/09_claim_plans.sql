--
-- 09_claim_plans: a claim reads the outbox through its indexes whatever the session's
-- cached plans were made from. The worker plans _claim once per session (generic plans),
-- usually right after it starts, on an outbox that may be empty; before 1.1 the plan made
-- then was a hash join over a sequential scan of the outbox, kept while the backlog grew
-- (15-17 ms per claim at 50,000 rows instead of 0.3 ms). Here the plans are made on an
-- empty outbox, the outbox then grows without ANALYZE, and each claim path must scan
-- neither the outbox nor the cases sequentially (pg_stat_xact_user_tables).
--
\ir test/regress/common.sql

-- no ANALYZE behind the test's back: the cached plans keep the empty outbox's estimates
ALTER TABLE halo_itsm.outbox SET (autovacuum_enabled = false);
ALTER TABLE halo_itsm.cases SET (autovacuum_enabled = false);

SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret', name => 'one') AS one,
       halo_itsm.connect('https://other.halopsa.com', 'cid', 'secret', name => 'two') AS two;
SELECT halo_itsm.configure(1, 'Security>Incident'), halo_itsm.configure(2, 'Security>Incident');

-- The scans of this backend on the outbox and the cases not yet reported to the statistics
-- collector (they are reported when the session is idle, outside a transaction): compared
-- before and after a claim inside one transaction, the scans that claim made.
CREATE VIEW pg_temp.scans AS
SELECT relname, seq_scan, idx_scan
  FROM pg_stat_xact_user_tables
 WHERE relid IN ('halo_itsm.outbox'::regclass, 'halo_itsm.cases'::regclass);
CREATE TEMP TABLE before AS SELECT * FROM pg_temp.scans WITH NO DATA;
CREATE VIEW pg_temp.claim_scans AS
SELECT s.relname, s.seq_scan - b.seq_scan AS seq_scans, s.idx_scan - b.idx_scan > 0 AS by_index
  FROM pg_temp.scans s JOIN pg_temp.before b USING (relname)
 ORDER BY s.relname;

-- 1. Both claim paths planned on the empty outbox: two enabled integrations
--    (_claim_due_each), then one (_claim_due_single).
SELECT count(*) AS claimed FROM halo_itsm._claim(10, 10);
SELECT halo_itsm.set_enabled(2, false);
SELECT count(*) AS claimed FROM halo_itsm._claim(10, 10);

-- 2. The backlog grows: 3,000 cases for one, 300 for two.
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)
SELECT 'PLAN-' || g, 'case ' || g, 'high', CASE WHEN g % 11 = 0 THEN 2 ELSE 1 END
  FROM generate_series(1, 3300) g;
SELECT integration_id, count(*) FROM halo_itsm.outbox GROUP BY 1 ORDER BY 1;

-- 3. A claim with one enabled integration: through the indexes only.
BEGIN;
INSERT INTO pg_temp.before SELECT * FROM pg_temp.scans;
SELECT count(*) AS claimed FROM halo_itsm._claim(10, 10);
SELECT * FROM pg_temp.claim_scans;
ROLLBACK;

-- 4. A claim with both enabled: through the indexes only.
SELECT halo_itsm.set_enabled(2, true);
BEGIN;
INSERT INTO pg_temp.before SELECT * FROM pg_temp.scans;
SELECT integration_id, count(*) AS claimed FROM halo_itsm._claim(20, 10) GROUP BY 1 ORDER BY 1;
SELECT * FROM pg_temp.claim_scans;
ROLLBACK;

-- 5. No JIT in the claim's statements: with seqscans off their estimates pass
--    jit_above_cost, and a cached plan with JIT compiles again at every call (70 % of the
--    worker's CPU at 200 integrations). The functions with those settings turn it off.
SELECT p.proname, 'jit=off' = ANY (p.proconfig) AS jit_off
  FROM pg_proc p
 WHERE p.pronamespace = 'halo_itsm'::regnamespace
   AND 'enable_seqscan=off' = ANY (p.proconfig)
 ORDER BY 1;

-- 6. A claim of cases calls each payload function for the items of its kinds only: the
--    follow-up payload (notes, closes, updates) is not called for a case at all.
BEGIN;
SET LOCAL track_functions = 'all';
SELECT count(*) AS claimed FROM halo_itsm._claim(5, 5);
SELECT p.proname, f.calls
  FROM pg_stat_xact_user_functions f JOIN pg_proc p ON p.oid = f.funcid
 WHERE p.proname IN ('_payload_or_error', '_followup_payload')
 ORDER BY 1;
ROLLBACK;
