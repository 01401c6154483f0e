"""DuckDB's serialized secret format, read and written in Python.

Rows of a duckdb_secrets table are written by whoever may INSERT there, so
the reader must refuse, never crash on, any bytes. Byte-for-byte agreement
with DuckDB itself is checked against rows a real DuckDB client wrote.
"""


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duckdb_secrets import serialized
from test_table_storage import client

names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
values = st.one_of(names, st.booleans(), st.lists(names, max_size=4),
                   st.dictionaries(names, names, max_size=4))


@settings(max_examples=300, deadline=None)
@given(st.builds(serialized.Secret, names, names, names, st.lists(names, max_size=3),
                 st.dictionaries(st.text("abcdefghij_", min_size=1, max_size=12), values, max_size=8),
                 st.lists(names, max_size=3)))
def test_round_trip(secret):
    back = serialized.decode(serialized.encode(secret))
    for f in serialized.Secret.__slots__:
        assert getattr(back, f) == getattr(secret, f)


SAMPLE = serialized.encode(serialized.Secret("s3", "config", "s", ["s3://b"],
                                             {"key_id": "k", "use_ssl": False, "extra_http_headers": {"a": "b"}},
                                             ["secret"]))


def _decodes_or_is_refused(raw):
    """Decoding either gives a Secret, or raises Unreadable; nothing else."""
    try:
        out = serialized.decode(raw)
    except serialized.Unreadable:
        return None
    assert isinstance(out, serialized.Secret)
    assert isinstance(out.params, dict) and all(isinstance(k, str) for k in out.params)
    return out


def test_every_truncation_is_refused():
    for i in range(len(SAMPLE)):
        with pytest.raises(serialized.Unreadable):
            serialized.decode(SAMPLE[:i])


def test_trailing_bytes_are_refused():
    with pytest.raises(serialized.Unreadable):
        serialized.decode(SAMPLE + b"\x00")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_bytes_decode_to_a_secret_or_are_refused(data):
    raw = bytearray(SAMPLE)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[i:]
        else:
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    _decodes_or_is_refused(bytes(raw))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_to_a_secret_or_are_refused(raw):
    _decodes_or_is_refused(raw)


def test_huge_length_prefixes_are_refused_quickly():
    # field 100, then a string "length" of 2**60
    with pytest.raises(serialized.Unreadable):
        serialized.decode(b"\x64\x00" + b"\xff" * 8 + b"\x0f")


def test_rows_written_by_duckdb_round_trip_byte_for_byte(db):
    """Every value shape DuckDB's own writer produces for these types decodes, and
    re-encodes to exactly the bytes DuckDB wrote."""
    client(db,
           "CREATE SECRET a IN postgres_p (TYPE s3, KEY_ID 'k', SECRET 's', REGION 'r', SCOPE 's3://b', "
           "USE_SSL false, ENDPOINT 'e:1', URL_STYLE 'path')",
           "CREATE SECRET b IN postgres_p (TYPE http, EXTRA_HTTP_HEADERS MAP {'X-A': '1', 'b': '2'}, "
           "BEARER_TOKEN 't')",
           "CREATE SECRET c IN postgres_p (TYPE postgres, HOST 'h', PORT 5432, DATABASE d, USER 'u', "
           "PASSWORD 'p', CONNECT_TIMEOUT 10)",
           "CREATE SECRET d IN postgres_p (TYPE gcs, KEY_ID 'k', SECRET 's', REQUESTER_PAYS true, "
           "SCOPE ['gs://x', 'gs://y'])",
           "CREATE SECRET e IN postgres_p (TYPE huggingface, TOKEN 'hf')")
    rows = db.conn.execute("SELECT secret_name, serialized_secret FROM duckdb_secrets ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == ["a", "b", "c", "d", "e"]
    for name, blob in rows:
        s = serialized.decode(blob)
        assert s.name == name
        assert serialized.encode(s) == bytes(blob), name
    c = serialized.decode(rows[2][1])
    assert c.params == {"host": "h", "port": "5432", "dbname": "d", "user": "u", "password": "p",
                        "connect_timeout": "10"}
    assert serialized.decode(rows[1][1]).params["extra_http_headers"] == {"X-A": "1", "b": "2"}
