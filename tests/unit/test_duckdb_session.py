"""DuckDB spills under the featurebus home, never into the working directory's ``.tmp``."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurebus.platform.offline.duckdb_session import connect, spill_root

# An in-memory table of about 100 MB against a 20 MB limit: DuckDB must evict its blocks to disk.
_TOO_BIG_FOR_MEMORY = "CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(2_000_000)"


@pytest.fixture
def home_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("FEATUREBUS_HOME", str(home))
    monkeypatch.chdir(cwd)
    return home, cwd


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_a_query_that_spills_writes_under_the_home(home_and_cwd: tuple[Path, Path]) -> None:
    home, cwd = home_and_cwd
    with connect(memory_limit="20MB", threads=1) as con:
        con.execute(_TOO_BIG_FOR_MEMORY)
        # Looked at while the connection is open: DuckDB deletes its spill files when it closes.
        spilled, in_cwd = _files(home), _files(cwd)
        # The data survived the spill: the query reads it back from disk.
        assert con.execute("SELECT count(*), max(i), sum(length(s)) FROM t").fetchall() == [
            (2_000_000, 1_999_999, 64_000_000)
        ]
    assert in_cwd == [], "DuckDB spilled into the working directory"
    assert spilled, "DuckDB did not spill: the test no longer forces it"
    assert spill_root() == home / "duckdb-spill"
    assert all(p.is_relative_to(spill_root()) for p in spilled), spilled
    # DuckDB removes the connection's spill directory when the connection closes.
    assert _files(spill_root()) == []


def test_connections_spill_into_directories_of_their_own(home_and_cwd: tuple[Path, Path]) -> None:
    # DuckDB versions before 2 name spill files alike in every database: a shared directory would
    # let one connection read (and, on close, delete) another's blocks.
    with connect(memory_limit="20MB", threads=1) as first, connect(memory_limit="20MB", threads=1) as second:
        first.execute(_TOO_BIG_FOR_MEMORY)
        second.execute(_TOO_BIG_FOR_MEMORY)
        directories = {p.parent for p in _files(spill_root())}
        assert len(directories) == 2, directories
        first.close()
        assert second.execute("SELECT count(*) FROM t").fetchall() == [(2_000_000,)]


def test_settings_reach_duckdb(home_and_cwd: tuple[Path, Path]) -> None:
    with connect(preserve_insertion_order=False, threads=1) as con:
        settings = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN ('preserve_insertion_order', 'threads')"
            ).fetchall()
        )
    assert settings == {"preserve_insertion_order": "false", "threads": "1"}
