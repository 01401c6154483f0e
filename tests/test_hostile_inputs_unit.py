"""The hostile inputs (tests/hostile.py) are what they claim: each crashing
one kills a plain DuckDB process by a signal (a DuckDB upgrade that fixes
one shows here first: the worker tests that use it prove nothing any more),
and the deep Parquet schema's encoding is valid (a shallow one reads as 0
rows). Every DuckDB here runs in a child process."""

import collections
import hashlib
import os
import re
import struct
import time

import pytest

import hostile

pytestmark = pytest.mark.inprocess


def _kills(outcome):
    assert outcome.status == "signal", f"DuckDB survived: {outcome}"
    return outcome.signal_name


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_deep_json_sql_is_tiny_and_shallow_json_reads():
    assert len(hostile.DEEP_VARIANT_SQL) < 200 and len(hostile.DEEP_JSON_STRUCTURE_SQL) < 200
    shallow = hostile.run_in_child(f"SELECT json_structure({hostile.deep_json_text(50)})::varchar")
    assert shallow.status == "ok", shallow


@pytest.mark.parametrize("sql", [hostile.DEEP_VARIANT_SQL, hostile.DEEP_JSON_STRUCTURE_SQL],
                         ids=["variant", "json_structure"])
def test_deep_json_sql_kills_duckdb(sql):
    _kills(hostile.run_in_child(sql, timeout=60, memory_limit="2GB"))


def test_shallow_schema_parquet_reads_as_no_rows(tmp_path):
    data = hostile.deep_schema_parquet(3)
    assert data[:4] == data[-4:] == b"PAR1"
    assert struct.unpack("<I", data[-8:-4])[0] == len(data) - 12
    path = _write(tmp_path, "shallow.parquet", data)
    with hostile.ChildDuckDB() as child:
        rows = child.run(hostile.read_sql("parquet", path))
        assert rows.status == "ok" and rows.rows == 0, rows
        schema = child.run(f"SELECT typeof(g) FROM read_parquet({hostile.sql_string(path)})")
        assert schema.status == "ok", schema
        described = child.run(f"DESCRIBE SELECT * FROM read_parquet({hostile.sql_string(path)})")
    assert described.status == "ok" and "STRUCT(g STRUCT(g STRUCT(v INTEGER)))" in described.first_rows[0], described


def test_deep_schema_parquet_is_quick_to_build_and_kills_duckdb(tmp_path):
    start = time.monotonic()
    data = hostile.deep_schema_parquet()
    assert time.monotonic() - start < 5
    assert 23_000_000 < len(data) < 25_000_000
    assert data == hostile.deep_schema_parquet()        # deterministic
    path = _write(tmp_path, "deep.parquet", data)
    _kills(hostile.run_in_child(hostile.read_sql("parquet", path), timeout=60, memory_limit="2GB"))
    _kills(hostile.run_in_child(f"SELECT * FROM parquet_schema({hostile.sql_string(path)})", timeout=60,
                                memory_limit="2GB"))


def test_corrupted_parquet_base_is_what_duckdb_writes_and_reads():
    base = hostile.corrupted_parquet_base()
    assert hashlib.sha256(base).hexdigest() == hostile.CORRUPT_BASE_SHA256
    start, end = hostile.list_column_chunk(base)
    assert start <= hostile.CORRUPT_OFFSET < end


def test_corrupted_parquet_is_one_byte_and_kills_duckdb(tmp_path):
    base = hostile.corrupted_parquet_base()
    data = hostile.corrupted_parquet()
    assert len(data) == len(base) and sum(a != b for a, b in zip(data, base, strict=True)) == 1
    good = _write(tmp_path, "base.parquet", base)
    with hostile.ChildDuckDB() as child:
        read = child.run(hostile.CORRUPT_READ_SQL.format(path=hostile.sql_string(good)))
    expected = sum(len(f"a{i},") + i % 50 for i in range(2000))        # 'a' || i, ',', repeat('x', i % 50)
    assert read.status == "ok" and read.first_rows == [f"(2000, {expected})"], read
    bad = _write(tmp_path, "corrupted.parquet", data)
    _kills(hostile.run_in_child(hostile.read_sql("parquet", bad), timeout=30))


ICEBERG = hostile.shipped_extension("iceberg")
needs_iceberg = pytest.mark.skipif(ICEBERG is None, reason="no shipped iceberg extension (make install)")


@needs_iceberg
def test_shallow_iceberg_metadata_reads_as_no_rows(tmp_path):
    path = hostile.write_deep_iceberg_table(str(tmp_path / "table"), depth=3)
    with hostile.ChildDuckDB(load=[ICEBERG]) as child:
        described = child.run(f"DESCRIBE SELECT * FROM iceberg_scan({hostile.sql_string(path)})")
        rows = child.run(f"SELECT * FROM iceberg_scan({hostile.sql_string(path)})")
    assert described.status == "ok" and "STRUCT(f STRUCT(f STRUCT(v INTEGER)))" in described.first_rows[0], described
    assert rows.status == "ok" and rows.rows == 0, rows


@needs_iceberg
def test_deep_iceberg_metadata_kills_duckdb(tmp_path):
    start = time.monotonic()
    path = hostile.write_deep_iceberg_table(str(tmp_path / "table"))
    assert time.monotonic() - start < 10
    assert os.listdir(tmp_path / "table") == ["metadata"]
    outcome = hostile.run_in_child(f"SELECT * FROM iceberg_scan({hostile.sql_string(path)})", timeout=60,
                                   memory_limit="2GB", load=[ICEBERG])
    _kills(outcome)


def test_mutants_are_seeded_and_read_sql_reads_the_bases(tmp_path):
    for kind in ("parquet", "csv", "json"):
        first = list(hostile.mutants(kind, 7, 20))
        assert first == list(hostile.mutants(kind, 7, 20))
        assert first != list(hostile.mutants(kind, 8, 20))
        assert len({name for name, _ in first}) == 20
    with hostile.ChildDuckDB() as child:
        for kind in ("parquet", "csv", "json"):
            for name, data in hostile.base_files(kind).items():
                outcome = child.run(hostile.read_sql(kind, _write(tmp_path, f"{name}.{kind}", data)))
                assert outcome.status == "ok" and outcome.rows in (800, 1500), (kind, name, outcome)


@pytest.mark.fuzz
def test_the_search_still_finds_a_crashing_byte():
    """find_crashing_mutation from CORRUPT_SEED finds a byte that kills
    DuckDB (in the stored run: CORRUPT_OFFSET, CORRUPT_BYTE after
    CORRUPT_TRIES tries, ~100 s)."""
    found = hostile.find_crashing_mutation(hostile.corrupted_parquet_base(), hostile.CORRUPT_SEED,
                                           hostile.CORRUPT_TRIES + 1000)
    assert found is not None, "no mutation crashed DuckDB"


@pytest.mark.fuzz
@pytest.mark.parametrize("kind,count", [("parquet", 300), ("csv", 100), ("json", 100)])
def test_fuzz_ends_every_mutant_in_an_answer_or_a_signal(kind, count, tmp_path):
    """What the worker's slow test meets: every mutant read ends, with rows,
    a DuckDB error, or a signal; none hangs."""
    seen = collections.Counter()
    for name, outcome in hostile.fuzz(kind, 1, count, directory=str(tmp_path)):
        assert outcome.status in ("ok", "error", "signal"), (name, outcome)
        seen[outcome.status if outcome.status != "error" else re.sub(r"\W.*", "", outcome.error_class)] += 1
    assert sum(seen.values()) == count, seen
