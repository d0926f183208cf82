/*
 * 15_version.sql: which version of halo_itsm is loaded.
 *
 * Part of the install script sql/halo_itsm--<version>.sql (make concatenates sql/common/, outbound/ and inbound/ by number).
 */

-- The version the loaded C library was built as. After a package upgrade and before
-- ALTER EXTENSION halo_itsm UPDATE, it differs from pg_extension.extversion.
CREATE OR REPLACE FUNCTION halo_itsm.library_version() RETURNS text
    LANGUAGE c STRICT STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'halo_itsm_library_version';
