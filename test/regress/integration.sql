-- integration.sql: included after common.sql by the tests that need an integration:
-- integration 1 on a local address where nothing answers (127.0.0.1:9), allowed by this
-- session's allow_http and allow_private_addresses. No test reaches Halo through it.
SET halo_itsm.allow_http = on;
SET halo_itsm.allow_private_addresses = on;
SELECT halo_itsm.connect('http://127.0.0.1:9', 'client', 'client-secret') AS integration;
