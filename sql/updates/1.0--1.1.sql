/*
 * sql/updates/1.0--1.1.sql: what runs once on the way from 1.0 to 1.1 (ALTER TABLE, new
 * tables and types, DROP of a function whose signature changed). The Makefile appends
 * every re-runnable part of sql/ (the files not named *.once.sql) to make
 * sql/halo_itsm--1.0--1.1.sql, the script ALTER EXTENSION halo_itsm UPDATE runs.
 */
\echo Use "ALTER EXTENSION halo_itsm UPDATE" to load this file. \quit

-- 1.1's version gate (src/common/extension.c) needs no schema change.
