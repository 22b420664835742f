import os
import shutil
import sqlite3
import stat
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python", "examples"))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "legacy")


@pytest.fixture
def fixture_copy(tmp_path):
    """Copy a read-only legacy fixture into the test's directory and return its path."""

    def copy(name, as_name=None):
        to = tmp_path / (as_name or name)
        shutil.copy(os.path.join(FIXTURES, name), to)
        os.chmod(to, stat.S_IRUSR | stat.S_IWUSR)
        return str(to)

    return copy


@pytest.fixture
def store(tmp_path):
    import tms

    s = tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"))
    yield s
    s.close()


def rows(path, sql):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()
