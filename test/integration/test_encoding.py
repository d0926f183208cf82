"""A database that is not UTF-8 (issue 9, review of item 1): Halo's answers are read as
UTF-8 outside any transaction, where PostgreSQL cannot convert encodings, so every answer
would be unusable there. CREATE EXTENSION refuses such a database with a clear error
instead of installing and then delivering nothing.
"""
from halo_test import close_connections, expect_error, q, timeout

LATIN1_DB = "halo_latin1"


@timeout(60)
def test_create_extension_refuses_a_database_that_is_not_utf8():
    q("DROP DATABASE IF EXISTS %s" % LATIN1_DB, db="postgres")
    q("CREATE DATABASE %s ENCODING 'LATIN1' TEMPLATE template0 LOCALE 'C'" % LATIN1_DB,
      db="postgres")
    try:
        e = expect_error("0A000", "CREATE EXTENSION halo_itsm", db=LATIN1_DB)
        assert e.diag.message_primary == (
            "halo_itsm: this database's encoding is LATIN1, and halo_itsm needs UTF8")
        assert e.diag.message_hint.startswith("Create the database with ENCODING 'UTF8'")
        assert q("SELECT extname FROM pg_extension WHERE extname = 'halo_itsm'",
                 db=LATIN1_DB) == []
    finally:
        close_connections()
        q("DROP DATABASE IF EXISTS %s" % LATIN1_DB, db="postgres")
