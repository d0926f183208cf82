-- pgbench script (figure 5, baseline): the timeline row the same delivery adds, as a
-- plain INSERT (read from the same table of deliveries, like the measured side).
INSERT INTO halo_itsm.timeline (case_id, occurred_at, source, kind, author, body, internal,
                                integration_id, halo_ticket_id, halo_action_id)
SELECT d.case_id, now(), 'halo', 'note', 'Jane Agent', d.note, false, :iid, d.ticket_id,
       d.action_id + 1000000000
  FROM bench.deliveries d WHERE d.n = (SELECT nextval('bench.plain_seq'));
