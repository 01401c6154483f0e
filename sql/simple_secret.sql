-- duckdb.create_simple_secret(): a SERVER plus a USER MAPPING FOR CURRENT_USER,
-- with the signature of Postgres Pro AXE / pg_duckdb. Empty strings mean "not set".
\set SHOW_CONTEXT never
SET client_min_messages = warning;   -- the same output on a fresh and an upgraded install
CREATE EXTENSION IF NOT EXISTS duckdb_secrets CASCADE;
RESET client_min_messages;

SELECT duckdb.create_simple_secret(type := 'S3', key_id := 'AKIAEXAMPLE', secret := 'regress-secret-2',
                                   region := 'us-east-1');
-- The next one gets a numbered name; any case of the type works.
SELECT duckdb.create_simple_secret(type := 'gcs', key_id := 'GOOG1', secret := 'regress-secret-3');
SELECT duckdb.create_simple_secret(type := 'R2', key_id := 'r2key', secret := 'regress-secret-4',
                                   scope := 'r2://bucket');
-- One secret per type and scope: a second S3 secret for s3:// would leave
-- DuckDB to choose by name. Rotate the key instead, or give another scope.
SELECT duckdb.create_simple_secret(type := 's3', key_id := 'AKIA2', secret := 'regress-secret-5');
ALTER USER MAPPING FOR CURRENT_USER SERVER simple_s3_secret OPTIONS (SET secret 'regress-secret-5');
SELECT duckdb.create_simple_secret(type := 's3', key_id := 'AKIA2', secret := 'regress-secret-5',
                                   endpoint := '127.0.0.1:9000', url_style := 'path', use_ssl := 'false',
                                   scope := 's3://local-bucket');

-- Non-sensitive options land on the server, sensitive ones in the mapping.
SELECT srvname, srvtype, srvoptions FROM pg_foreign_server ORDER BY srvname;
SELECT srvname, usename = current_user AS mine,
       (SELECT array_agg(split_part(o, '=', 1) ORDER BY o) FROM unnest(umoptions) o) AS mapping_options
  FROM pg_user_mappings ORDER BY srvname;

-- Bad calls get clear errors and create nothing.
SELECT duckdb.create_simple_secret(type := 'azure', key_id := 'k', secret := 's');
SELECT duckdb.create_simple_secret(type := NULL, key_id := 'k', secret := 's');
SELECT duckdb.create_simple_secret(type := 'S3', key_id := 'k', secret := NULL);
SELECT duckdb.create_simple_secret(type := 'S3', key_id := 'k', secret := 's', use_ssl := 'maybe');
-- validation belongs to the credential_chain provider.
SELECT duckdb.create_simple_secret(type := 'S3', key_id := 'k', secret := 's', validation := 'none');
SELECT count(*) AS servers FROM pg_foreign_server;

-- duckdb.drop_secret() removes a secret (DROP SERVER ... CASCADE), for duckdb servers only.
SELECT duckdb.drop_secret('simple_s3_secret_1');
SELECT duckdb.drop_secret('no_such_secret');
SELECT duckdb.drop_secret(name) FROM (VALUES ('simple_s3_secret'), ('simple_gcs_secret'), ('simple_r2_secret')) v(name);
SELECT count(*) AS servers FROM pg_foreign_server;
