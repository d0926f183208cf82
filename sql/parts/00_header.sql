/*
 * halo_itsm--1.0.sql: install script of the halo_itsm extension.
 *
 * Tables (cases, detections, tickets, outbox, timeline, integrations and their
 * secrets), the triggers that write the outbox in the inserting transaction,
 * the configuration functions, the status view, and the SQL side of delivery
 * (claim and record) used by the background worker and by deliver().
 */
\echo Use "CREATE EXTENSION halo_itsm" to load this file. \quit

