-- wrk script (test/bench/wrk_post.lua): POST /api/Tickets with a ticket body, as
-- the delivery worker sends it, to measure the fast mock's capacity.
wrk.method = "POST"
wrk.path = "/api/Tickets"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-token"
wrk.body = '[{"summary": "W-1: wrk", "details": "Severity: High\nCase: W-1", "tickettype_id": 1, "priority_id": 2, "category_1": "Security>Incident", "third_party_id_string": "W-1"}]'
