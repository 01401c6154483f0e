-- Secrets in a duckdb_secrets table (DuckDB's own format), both directions,
-- and the origin column of duckdb.secrets().
\set SHOW_CONTEXT never
SET client_min_messages = warning;   -- the same output on a fresh and an upgraded install
CREATE EXTENSION IF NOT EXISTS duckdb_secrets CASCADE;
RESET client_min_messages;

CREATE SERVER lake TYPE 's3' FOREIGN DATA WRAPPER duckdb
  OPTIONS (region 'eu-west-1', endpoint '127.0.0.1:9', url_style 'path', use_ssl 'false', scope 's3://lake');
CREATE USER MAPPING FOR CURRENT_USER SERVER lake OPTIONS (key_id 'AKIAREGRESS', secret 'regress-table-1');
CREATE SERVER catalog_chain TYPE 's3' FOREIGN DATA WRAPPER duckdb
  OPTIONS (provider 'credential_chain', chain 'env', validation 'none', scope 's3://catalog');

-- Outward: sensitive parts only on request, since the table stores them unencrypted.
SELECT duckdb.store_table_secret('lake');
SELECT to_regclass('duckdb_secrets');
SELECT duckdb.store_table_secret('lake', include_sensitive => true);
SELECT duckdb.store_table_secret('no_such_server');
SELECT duckdb.store_table_secret(NULL);
-- A table of the wrong shape is not written to.
CREATE TABLE not_secrets (secret_name text, payload jsonb);
SELECT duckdb.store_table_secret('catalog_chain', 'not_secrets');
SELECT duckdb.store_table_secret('catalog_chain', 'no_schema.t');
SELECT secret_name, secret_type, length(serialized_secret) > 100 AS has_blob FROM duckdb_secrets;

-- Inward: the row is another secret now; the server of the same name wins.
DROP SERVER lake CASCADE;
SELECT name, server, origin, type, scope, secret_string FROM duckdb.secrets() ORDER BY name;

-- Only the configuration files name the table (default public.duckdb_secrets):
-- a role's SET changes nothing, since a table at a place the role chose would
-- run its owner's code in the session.
SET duckdb.secret_storage_table = '';
SELECT name, origin FROM duckdb.secrets() ORDER BY name;
SET duckdb.secret_storage_table = 'a.b.c';
SELECT name, origin FROM duckdb.secrets() ORDER BY name;
RESET duckdb.secret_storage_table;

-- A damaged row is skipped with a warning; the others still load.
INSERT INTO duckdb_secrets VALUES ('broken', 's3', '\x640002'::bytea);
SELECT name, origin FROM duckdb.secrets() ORDER BY name;

DROP TABLE duckdb_secrets, not_secrets;
DROP SERVER catalog_chain;
SELECT name, origin FROM duckdb.secrets() ORDER BY name;
