"""Smoke tests: the harness's servers answer, and the extension is preloaded."""
from halo_test import Mock, q1


def test_mock_and_postgres_answer():
    assert isinstance(Mock().requests(), list)
    assert q1("select 1") == 1


def test_extension_preloaded():
    libs = [s.strip() for s in q1("SHOW shared_preload_libraries").split(",")]
    assert "halo_itsm" in libs, libs
