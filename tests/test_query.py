"""duckdb.query() result transfer: the bulk path (column arrays unnested in
SQL) returns every row, in order, with NULLs and awkward text intact; results
with list columns take the row-by-row path."""


def test_bulk_path_across_chunks_keeps_order_nulls_and_text(db):
    rows = db.conn.execute("""
        SELECT * FROM duckdb.query($$
          SELECT range AS i,
                 CASE WHEN range % 7 = 0 THEN NULL ELSE 'v"' || range || E'\\\\,{}' END AS s,
                 range % 2 = 0 AS even
            FROM range(120000) ORDER BY range
        $$) AS t(i bigint, s text, even boolean)""").fetchall()
    assert len(rows) == 120000                                 # more than two 50,000-row chunks
    assert [r[0] for r in rows] == list(range(120000))         # order kept across chunks
    for i in (0, 1, 49999, 50000, 50001, 119999):
        expected = None if i % 7 == 0 else f'v"{i}\\,{{}}'      # one backslash
        assert rows[i] == (i, expected, i % 2 == 0)


def test_list_columns_take_the_row_path(db):
    rows = db.conn.execute("SELECT * FROM duckdb.query($$ SELECT range AS i, [range, NULL] AS l FROM range(3) $$) "
                           "AS t(i bigint, l bigint[])").fetchall()
    assert rows == [(0, [0, None]), (1, [1, None]), (2, [2, None])]


def test_empty_result(db):
    assert db.conn.execute("SELECT * FROM duckdb.query('SELECT 1 WHERE false') AS t(x integer)").fetchall() == []
