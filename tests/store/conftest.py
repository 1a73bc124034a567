import pytest

from sidecar.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite"])
def store(request, tmp_path):
    """Every store backend, so one contract suite holds them all to the same behaviour."""
    backend = SqliteStore(tmp_path / "store.db")
    yield backend
    backend.close()
