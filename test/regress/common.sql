-- common.sql: the preamble of every regress test (\ir test/regress/common.sql: pg_regress
-- feeds each test to psql on its standard input, so a test's own \ir paths are relative
-- to the directory make runs in; those of an included file, to that file's directory).
-- Every test starts from a freshly created extension.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS halo_itsm CASCADE;
CREATE EXTENSION halo_itsm;
RESET client_min_messages;
