-- The DuckDB engine embedded in each backend.
\set SHOW_CONTEXT never
SET client_min_messages = warning;   -- the same output on a fresh and an upgraded install
CREATE EXTENSION IF NOT EXISTS duckdb_secrets CASCADE;
RESET client_min_messages;

-- duckdb.query() runs DuckDB SQL; name the columns with the types DuckDB returns.
SELECT * FROM duckdb.query($$ SELECT 42 AS answer, 'forty-two' AS words $$) AS t(answer integer, words text);
SELECT * FROM duckdb.query($$ SELECT count(*) FROM range(1000) $$) AS t(n bigint);
-- A column declared with another type than DuckDB's is read with that type's
-- input function, as dblink does.
SELECT * FROM duckdb.query($$ SELECT 42 $$) AS t(answer bigint);
SELECT * FROM duckdb.query($$ SELECT count(*) AS n, TIMESTAMP '2024-02-29 12:00' AS ts FROM range(3) $$)
  AS t(n text, ts timestamptz);
-- A value that does not convert is an error naming the column.
SELECT * FROM duckdb.query($$ SELECT 7 AS id, 'forty-two' AS answer $$) AS t(id integer, answer integer);
-- A wrong number of columns is reported by PostgreSQL, with DuckDB's columns.
SELECT * FROM duckdb.query($$ SELECT 42 AS answer, 43 AS other $$) AS t(answer integer);

-- DuckDB types map to PostgreSQL types; nested values arrive as jsonb.
SELECT * FROM duckdb.query($$
  SELECT true, 1::TINYINT, 2::HUGEINT, 1.25::DECIMAL(10,2), 0.5::DOUBLE, DATE '2024-02-29',
         TIMESTAMP '2024-02-29 12:34:56', INTERVAL 90 MINUTE, '00000000-0000-0000-0000-00000000002a'::UUID,
         [1, 2, NULL], {'a': 1, 'b': [true]}, 'bytes'::BLOB, NULL::VARCHAR
$$) AS t(b boolean, i smallint, h numeric, d numeric, f double precision, dt date, ts timestamp,
         iv interval, u uuid, l integer[], s jsonb, bl bytea, n text);

-- DuckDB answers CREATE TABLE AS with the number of rows written.
SELECT * FROM duckdb.query($$ CREATE TABLE t AS SELECT range AS i FROM range(3) $$) AS t(written bigint);
-- Other DDL returns no rows (DuckDB still declares one bigint column).
SELECT * FROM duckdb.query($$ CREATE MACRO twice(x) AS 2 * x $$) AS t(count bigint);
SELECT * FROM duckdb.query($$ SELECT twice(21) $$) AS t(x integer);
SELECT * FROM duckdb.query($$ SELECT sum(i) FROM t $$) AS t(s numeric);

-- DuckDB errors become PostgreSQL errors with a matching SQLSTATE class.
SELECT * FROM duckdb.query($$ SELECT * FROM no_such_table $$) AS t(x int);
SELECT * FROM duckdb.query($$ SELEC 1 $$) AS t(x int);

-- raw_query shows the result as a NOTICE.
SELECT duckdb.raw_query($$ SELECT 1 AS one, 'two' AS two $$);

-- Secrets: the engine holds one per duckdb server the role may use, named after it.
CREATE SERVER eng_s3 TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (region 'eu-west-1', scope 's3://eng-bucket');
CREATE USER MAPPING FOR CURRENT_USER SERVER eng_s3 OPTIONS (key_id 'AKIAENGINE', secret 'regress-secret-6');
SELECT name, server, type, provider, scope, storage, secret_string FROM duckdb.secrets();
SELECT * FROM duckdb.which_secret('s3://eng-bucket/x.parquet', 's3');
SELECT * FROM duckdb.which_secret('s3://elsewhere/x.parquet', 's3');

-- A change is seen by the next use, without reconnecting.
ALTER SERVER eng_s3 OPTIONS (SET region 'us-west-2');
SELECT name, secret_string FROM duckdb.secrets();

-- A rolled-back change leaves nothing behind in the engine.
BEGIN;
SELECT duckdb.create_simple_secret(type := 'S3', key_id := 'AKIATX', secret := 'regress-secret-7');
SELECT name FROM duckdb.secrets() ORDER BY name;
ROLLBACK;
SELECT name FROM duckdb.secrets() ORDER BY name;

-- recycle_ddb() drops this backend's engine; the next use starts a fresh one.
SELECT * FROM duckdb.query($$ SELECT count(*) FROM t $$) AS t(n bigint);
SELECT duckdb.recycle_ddb();
SELECT * FROM duckdb.query($$ SELECT count(*) FROM t $$) AS t(n bigint);
SELECT name FROM duckdb.secrets();

DROP SERVER eng_s3 CASCADE;
SELECT count(*) FROM duckdb.secrets();
