-- empty.sql: included by the tests that start over midway: empties every halo_itsm table
-- and restarts its sequences.
SET client_min_messages = warning;
TRUNCATE halo_itsm.integrations, halo_itsm.integration_secrets, halo_itsm.cases,
         halo_itsm.detections, halo_itsm.tickets, halo_itsm.outbox, halo_itsm.timeline,
         halo_itsm.webhook_deliveries RESTART IDENTITY CASCADE;
RESET client_min_messages;
