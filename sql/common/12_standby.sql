/*
 * 12_standby.sql: the one check every SQL entry point that writes makes first: on a hot
 * standby it fails with SQLSTATE 25006, naming the entry point, with a hint to run it on
 * the primary (src/common/standby.c; C entry points call the same function).
 * Part of the install script sql/halo_itsm--<version>.sql (make concatenates sql/common/, outbound/ and inbound/ by number).
 */

-- Raises 25006 (read_only_sql_transaction) on a hot standby; nothing on a primary.
CREATE OR REPLACE FUNCTION halo_itsm._refuse_on_standby(entry_point text)
RETURNS void LANGUAGE C STRICT VOLATILE AS 'MODULE_PATHNAME', 'halo_itsm_refuse_on_standby';
