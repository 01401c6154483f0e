-- Lakehouse types: iceberg, ducklake, quack, uc, unity_catalog (DuckDB 1.5.5's
-- iceberg, ducklake, quack and unity_catalog extensions); motherduck refused.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS duckdb_secrets CASCADE;
RESET client_min_messages;

-- iceberg: a bearer token, or OAuth2 client credentials (the DDL check stays offline).
CREATE SERVER ice_token TYPE 'iceberg' FOREIGN DATA WRAPPER duckdb
  OPTIONS (endpoint 'http://127.0.0.1:9/catalog', oauth2_scope 'PRINCIPAL_ROLE:ALL');
CREATE USER MAPPING FOR CURRENT_USER SERVER ice_token OPTIONS (token 'regress-ice-token');
CREATE SERVER ice_oauth TYPE 'iceberg' FOREIGN DATA WRAPPER duckdb
  OPTIONS (oauth2_server_uri 'http://127.0.0.1:9/v1/oauth/tokens', client_id 'reader', expires_in '3600');
CREATE USER MAPPING FOR CURRENT_USER SERVER ice_oauth OPTIONS (client_secret 'regress-ice-secret');
CREATE SERVER bad TYPE 'iceberg' FOREIGN DATA WRAPPER duckdb OPTIONS (client_secret 'x');
CREATE SERVER bad TYPE 'iceberg' FOREIGN DATA WRAPPER duckdb OPTIONS (oauth2_grant_type 'password');
CREATE SERVER bad TYPE 'iceberg' FOREIGN DATA WRAPPER duckdb OPTIONS (expires_in 'soon');
CREATE SERVER ice_noid TYPE 'iceberg' FOREIGN DATA WRAPPER duckdb OPTIONS (endpoint 'http://127.0.0.1:9');
CREATE USER MAPPING FOR CURRENT_USER SERVER ice_noid OPTIONS (client_secret 'x');
DROP SERVER ice_noid CASCADE;
DROP SERVER ice_oauth CASCADE;      -- its export would ask the token endpoint for a token

-- ducklake: metadata_path is required; a password belongs in a mapping or a postgres server.
CREATE SERVER lake TYPE 'ducklake' FOREIGN DATA WRAPPER duckdb
  OPTIONS (metadata_path 'postgres:dbname=lake host=127.0.0.1', data_path 's3://bucket/lake/',
           metadata_parameters 'TYPE=postgres, SECRET=lake_pg', metadata_schema 'lakemeta');
CREATE SERVER bad TYPE 'ducklake' FOREIGN DATA WRAPPER duckdb OPTIONS (data_path 's3://bucket/lake/');
CREATE SERVER bad TYPE 'ducklake' FOREIGN DATA WRAPPER duckdb
  OPTIONS (metadata_path 'postgres:dbname=lake password=regress-lake-pw');
CREATE SERVER bad TYPE 'ducklake' FOREIGN DATA WRAPPER duckdb
  OPTIONS (metadata_path 'm', metadata_parameters 'PASSWORD=regress-lake-pw');
CREATE SERVER bad TYPE 'ducklake' FOREIGN DATA WRAPPER duckdb OPTIONS (metadata_path 'm', encrypted 'maybe');

-- quack: a token is required (without one DuckDB's ATTACH fails for good).
CREATE SERVER q TYPE 'quack' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 'quack:127.0.0.1:9494');
CREATE USER MAPPING FOR CURRENT_USER SERVER q OPTIONS (token 'regress-quack-token');
CREATE SERVER bad TYPE 'quack' FOREIGN DATA WRAPPER duckdb OPTIONS (token 'x');
CREATE SERVER bad TYPE 'quack' FOREIGN DATA WRAPPER duckdb OPTIONS (host '127.0.0.1');

-- Unity Catalog, under both of its names.
CREATE SERVER uc1 TYPE 'uc' FOREIGN DATA WRAPPER duckdb OPTIONS (endpoint 'http://127.0.0.1:9', aws_region 'us-east-1');
CREATE USER MAPPING FOR CURRENT_USER SERVER uc1 OPTIONS (token 'regress-uc-token');
CREATE SERVER uc2 TYPE 'unity_catalog' FOREIGN DATA WRAPPER duckdb OPTIONS (endpoint 'http://127.0.0.1:9');

-- motherduck: refused (its extension downloads code when it loads).
CREATE SERVER md TYPE 'motherduck' FOREIGN DATA WRAPPER duckdb;

SELECT name, type, provider, scope, secret_string FROM duckdb.secrets() ORDER BY name;

SET client_min_messages = warning;
DROP SERVER ice_token, lake, q, uc1, uc2 CASCADE;
RESET client_min_messages;
