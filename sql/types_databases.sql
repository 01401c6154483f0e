-- Database secrets: postgres (every libpq keyword, aliases, uri, aws_rds_secret) and mysql,
-- for ATTACH '' AS db (TYPE postgres, SECRET <server>) inside the engine.
\set SHOW_CONTEXT never
SET client_min_messages = warning;   -- the same output on a fresh and an upgraded install
CREATE EXTENSION IF NOT EXISTS duckdb_secrets CASCADE;
RESET client_min_messages;

CREATE SERVER pg_app TYPE 'postgres' FOREIGN DATA WRAPPER duckdb
  OPTIONS (host '127.0.0.1', port '5432', database 'app', username 'reader', sslmode 'prefer',
           connect_timeout '5', application_name 'duckdb');
CREATE USER MAPPING FOR CURRENT_USER SERVER pg_app OPTIONS (password 'regress-db-1');
-- A uri carries the whole connection; it is sensitive (it may hold a password).
CREATE SERVER pg_uri TYPE 'postgres' FOREIGN DATA WRAPPER duckdb;
CREATE USER MAPPING FOR CURRENT_USER SERVER pg_uri OPTIONS (uri 'postgresql://reader:regress-db-2@127.0.0.1/app');
CREATE SERVER my_app TYPE 'mysql' FOREIGN DATA WRAPPER duckdb
  OPTIONS (host '127.0.0.1', port '3306', database 'app', "user" 'reader', ssl_mode 'preferred');
CREATE USER MAPPING FOR CURRENT_USER SERVER my_app OPTIONS (password 'regress-db-3');

-- Aliases are stored under the canonical libpq name (dbname, host, user).
SELECT name, type, secret_string FROM duckdb.secrets() ORDER BY name;

-- uri goes alone; aws_rds_secret replaces the password; an alias and its name are one option.
CREATE USER MAPPING FOR PUBLIC SERVER pg_app OPTIONS (uri 'postgresql://x@h/db');
CREATE SERVER my_rds TYPE 'rds' FOREIGN DATA WRAPPER duckdb
  OPTIONS (chain 'env', validation 'none', region 'eu-west-1', rds_user 'app', rds_host 'db.example', rds_port '5432');
CREATE SERVER bad TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (aws_rds_secret 'my_rds', host 'h');
CREATE USER MAPPING FOR CURRENT_USER SERVER bad OPTIONS (password 'x');
-- aws_rds_secret must name an rds server.
CREATE SERVER bad3 TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (aws_rds_secret 'pg_app');
CREATE SERVER bad3 TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (aws_rds_secret 'nowhere');
CREATE SERVER bad2 TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (dbname 'a', database 'b');
CREATE SERVER bad2 TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (port 'fifty');
CREATE SERVER bad2 TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (sslmode 'sometimes');
-- scram keys and passfile are sensitive too (DuckDB would show the scram keys).
CREATE SERVER bad2 TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (scram_client_key 'k');
CREATE SERVER bad2 TYPE 'mysql' FOREIGN DATA WRAPPER duckdb OPTIONS (sslmode 'require');

DROP SERVER pg_app, pg_uri, my_app, bad, my_rds CASCADE;
