#!/usr/bin/env bash
# test/demo.sh: the README's demo. Installs and builds, starts a fresh cluster and the
# mock Halo server, then tells the story below. Servers are stopped at the end unless
# HI_KEEP=1 (then psql -h /tmp -p 54329 -U postgres halo to look around).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$HI_ROOT"
hi_cleanup_on_exit

hi_setup
hi_cluster_start "halo_itsm.allow_private_addresses = on" "halo_itsm.backoff_base = 200ms" \
    "halo_itsm.listen_addresses = '127.0.0.1'" "halo_itsm.listen_port = $LISTEN_PORT"
hi_mock_start

# --- demo body ---
# The mock Halo listens on http://127.0.0.1: allow plain http and loopback for the demo only.
MOCK_URL="http://127.0.0.1:$MOCK_PORT"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sql() { psql -X -q -P pager=off -v ON_ERROR_STOP=1 -d "$HI_DB" "$@"; }
mock_get() { curl -fsS "$MOCK_URL$1"; }

say "1. Install the extension and connect it to Halo (the mock at $MOCK_URL)"
sql <<SQL
CREATE EXTENSION halo_itsm;
SELECT halo_itsm.connect('$MOCK_URL', 'test-client', 'test-secret') AS integration_id;
SELECT halo_itsm.configure(1, category => 'Security>Incident', team => 'SOC', client => 12,
                           standalone_detection_tickets => true,
                           case_title_template => '[{{severity}}] {{sid}}: {{title}}');
SQL
echo "check_connection(1) says:"
sql -At -c "SELECT jsonb_pretty(halo_itsm.check_connection(1))"

say "2. The SOC platform inserts cases of every severity and closes a standalone detection"
sql <<'SQL'
INSERT INTO halo_itsm.cases (sid, title, severity, description) VALUES
  ('CASE-1001', 'Ransomware encrypting file shares', 'critical', 'EDR saw mass renames on FS01.'),
  ('CASE-1002', 'Impossible travel for a privileged account', 'high', 'Logins from Oslo and Lima 9 minutes apart.'),
  ('CASE-1003', 'Phishing mail reported by finance', 'medium', NULL),
  ('CASE-1004', 'Outdated TLS on an internal portal', 'low', NULL),
  ('CASE-1005', 'New admin group member (approved change)', 'info', NULL);
INSERT INTO halo_itsm.detections (sid, title, severity, status)
VALUES ('DET-77', 'Port scan from a guest VLAN host', 'medium', 'open');
UPDATE halo_itsm.detections SET status = 'closed', closed_at = now() WHERE sid = 'DET-77';
SELECT kind, count(*) AS queued_in_outbox FROM halo_itsm.outbox GROUP BY kind ORDER BY kind;
SQL
echo "(the inserts committed at once; the background worker delivers after commit)"

for _ in $(seq 1 100); do
    n=$(sql -At -c "SELECT count(*) FROM halo_itsm.tickets")
    [ "$n" -ge 6 ] && break
    sleep 0.1
done

say "3. Each case and the detection is now a Halo Incident ticket"
sql <<'SQL'
SELECT coalesce(c.sid, d.sid) AS sid, coalesce(c.severity, d.severity) AS severity,
       t.halo_ticket_id, t.linked_by, o.attempts
  FROM halo_itsm.tickets t
  LEFT JOIN halo_itsm.cases c ON c.id = t.case_id
  LEFT JOIN halo_itsm.detections d ON d.id = t.detection_id
  JOIN halo_itsm.outbox o ON o.case_id = t.case_id OR o.detection_id = t.detection_id
 ORDER BY t.halo_ticket_id;
SQL
echo "What Halo (the mock) received and stored:"
mock_get /_mock/tickets | "$HI_PYTHON" -c '
import json, sys
print("%-5s %-12s %-58s %s" % ("id", "priority_id", "summary", "team / category / client"))
for t in json.load(sys.stdin):
    print("%-5s %-12s %-58s %s / %s / %s" % (t["id"], t["priority_id"], t["summary"][:58], t.get("team"), t.get("category_1"), t.get("client_id")))'
echo "The exact object POSTed for CASE-1001 (halo_itsm.ticket_payload):"
sql -At -c "SELECT jsonb_pretty(halo_itsm.ticket_payload('case', 'CASE-1001'))"

say "4. A Halo outage: the mock answers 500 twice, the worker retries with backoff"
curl -fsS -X POST "$MOCK_URL/_mock/faults" -H 'Content-Type: application/json' \
    -d '{"rules":[{"method":"POST","path":"/api/Tickets","count":2,"action":{"type":"status","status":500}}]}' >/dev/null
sql -c "INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('CASE-1006', 'Beaconing to a known C2 domain', 'high')"
sleep 0.3
sql -c "SELECT integration_id, pending, in_flight, dead, problem FROM halo_itsm.status"
for _ in $(seq 1 100); do
    [ "$(sql -At -c "SELECT count(*) FROM halo_itsm.tickets")" -ge 7 ] && break
    sleep 0.1
done
sql -c "SELECT o.attempts, t.halo_ticket_id, o.last_http_status FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id JOIN halo_itsm.tickets t ON t.case_id = c.id WHERE c.sid = 'CASE-1006'"

say "5. Delivery health (halo_itsm.status)"
sql -c "SELECT integration_id, name, pending, in_flight, dead, oldest_pending_age, last_success_at IS NOT NULL AS has_succeeded, problem FROM halo_itsm.status"
say "6. Halo closes a case and adds a note: signed webhooks to the listener inside PostgreSQL"
# The webhook listener (halo_itsm.listen_addresses) passes each POST to halo_itsm.ingest_webhook();
# with webhook_base_url empty, webhook_settings() gives the listener's own URL.
for _ in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$LISTEN_PORT/healthz" && break; sleep 0.1; done
echo "GET /healthz: $(curl -s "http://127.0.0.1:$LISTEN_PORT/healthz")"
echo "What to paste into Halo (Configuration > Integrations > Webhooks), from halo_itsm.webhook_settings(1):"
sql -c "SELECT url, left(secret, 8) || '...' AS secret FROM halo_itsm.webhook_settings(1)"
read -r WH_URL WH_SECRET < <(sql -At -F ' ' -c "SELECT url, secret FROM halo_itsm.webhook_settings(1)")
curl -fsS -X POST "$MOCK_URL/_mock/webhook" -H 'Content-Type: application/json' \
    -d "{\"url\": \"$WH_URL\", \"secret\": \"$WH_SECRET\", \"mode\": \"full\"}" >/dev/null
ticket_of() { sql -At -c "SELECT t.halo_ticket_id FROM halo_itsm.tickets t JOIN halo_itsm.cases c ON c.id = t.case_id WHERE c.sid = '$1'"; }
mock_post() { curl -fsS -X POST "$MOCK_URL$1" -H 'Content-Type: application/json' -d "$2"; }
show_webhook() { "$HI_PYTHON" -c 'import json, sys; w = json.load(sys.stdin)["webhook"]; print("  webhook answered", w["status"], w["response"])'; }
T1001=$(ticket_of CASE-1001)
T1003=$(ticket_of CASE-1003)
echo "An analyst adds an internal note to ticket $T1001 (CASE-1001) in Halo:"
mock_post "/_mock/tickets/$T1001/note" '{"note": "FS01 isolated; restoring the share from last night'"'"'s backup.", "who": "Alice (SOC L2)", "hiddenfromuser": true}' | show_webhook
echo "An agent closes ticket $T1003 (CASE-1003) in Halo:"
mock_post "/_mock/tickets/$T1003/close" '{"agent_name": "Bob (Service Desk)", "note": "User confirmed the mail was phishing; mailbox cleaned."}' | show_webhook
sql -c "SELECT sid, status, closed_at IS NOT NULL AS has_closed_at FROM halo_itsm.cases WHERE sid IN ('CASE-1001', 'CASE-1003') ORDER BY sid"
echo "The timelines (halo_itsm.timeline_of):"
sql -c "SELECT subject, to_char(occurred_at, 'HH24:MI:SS') AS at, source, kind, author, body, internal
          FROM halo_itsm.timeline_of('CASE-1001') UNION ALL
        SELECT subject, to_char(occurred_at, 'HH24:MI:SS'), source, kind, author, body, internal
          FROM halo_itsm.timeline_of('CASE-1003')"

say "7. A webhook that never arrives: reconcile() syncs open cases from Halo's API"
T1002=$(ticket_of CASE-1002)
curl -fsS -X POST "$MOCK_URL/_mock/webhook" -H 'Content-Type: application/json' -d '{"drop_next": 1}' >/dev/null
mock_post "/_mock/tickets/$T1002/close" '{"agent_name": "Carol (SOC L1)"}' >/dev/null
echo "Ticket $T1002 (CASE-1002) was closed in Halo, but its webhook was lost:"
sql -c "SELECT sid, status FROM halo_itsm.cases WHERE sid = 'CASE-1002'"
sql -c "CALL halo_itsm.reconcile()"
for _ in $(seq 1 100); do
    [ "$(sql -At -c "SELECT status FROM halo_itsm.cases WHERE sid = 'CASE-1002'")" = closed ] && break
    sleep 0.1
done
sql -c "SELECT sid, status FROM halo_itsm.cases WHERE sid = 'CASE-1002'"
sql -c "SELECT subject, source, kind, author, body FROM halo_itsm.timeline_of('CASE-1002')"

say "8. The platform's own table, attached: a close from Halo lands in it, a local note reaches Halo"
sql <<'SQL'
CREATE SCHEMA platform;
CREATE TABLE platform.incidents (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), ref text NOT NULL UNIQUE,
    name text NOT NULL, sev text, state text NOT NULL DEFAULT 'new', closed_at timestamptz);
SELECT halo_itsm.attach('platform.incidents', 'case', sid_column => 'ref', title_column => 'name',
    severity_column => 'sev', severity_map => '{"Sev1": "critical", "Sev2": "high", "Sev3": "medium", "Sev4": "low"}',
    status_column => 'state', closed_values => '{resolved}', closed_value => 'resolved',
    closed_at_column => 'closed_at') AS attachment;
INSERT INTO platform.incidents (ref, name, sev) VALUES
    ('INC-7', 'Credential stuffing against the VPN', 'Sev2'),
    ('INC-8', 'Unusual admin logon', 'Sev9');    -- unknown severity: sent as medium, never an error
SQL
for _ in $(seq 1 100); do
    [ -n "$(ticket_of INC-8)" ] && [ -n "$(ticket_of INC-7)" ] && break
    sleep 0.1
done
sql -c "SELECT c.sid, c.severity, t.halo_ticket_id, o.warning FROM halo_itsm.cases c JOIN halo_itsm.tickets t ON t.case_id = c.id JOIN halo_itsm.outbox o ON o.case_id = c.id AND o.kind = 'case' WHERE c.attachment_id IS NOT NULL ORDER BY c.sid"
T7=$(ticket_of INC-7)
echo "An agent closes ticket $T7 (INC-7) in Halo; the platform's own row is updated:"
mock_post "/_mock/tickets/$T7/close" '{"agent_name": "Dana (SOC L2)"}' | show_webhook
sql -c "SELECT ref, state, closed_at IS NOT NULL AS has_closed_at FROM platform.incidents ORDER BY ref"
echo "A local note on INC-8 (halo_itsm.add_note) goes to Halo as an action:"
sql -c "SELECT halo_itsm.add_note('platform.incidents', 'INC-8', 'Confirmed with the admin: it was him, from a hotel.') AS timeline_id"
for _ in $(seq 1 100); do
    [ "$(sql -At -c "SELECT count(*) FROM halo_itsm.outbox WHERE kind = 'note' AND state = 'done'")" -ge 1 ] && break
    sleep 0.1
done
mock_get /_mock/actions | "$HI_PYTHON" -c '
import json, sys
for a in json.load(sys.stdin):
    if a.get("outcome") == "Note" and a.get("actionby_application_id"):
        print("  Halo action %s on ticket %s: %r (internal: %s)" % (a["id"], a["ticket_id"], a["note"], a["hiddenfromuser"]))'
# --- end of demo body ---
