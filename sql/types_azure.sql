-- Azure Blob Storage / ADLS: providers config (connection string),
-- credential_chain, managed_identity, service_principal and access_token.
\set SHOW_CONTEXT never
SET client_min_messages = warning;   -- the same output on a fresh and an upgraded install
CREATE EXTENSION IF NOT EXISTS duckdb_secrets CASCADE;
RESET client_min_messages;

-- The helper: a connection string, kept in the user mapping.
SELECT duckdb.create_azure_secret('DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=cmVncmVzcw==;EndpointSuffix=core.windows.net',
                                  scope := 'az://container');
CREATE SERVER az_chain TYPE 'azure' FOREIGN DATA WRAPPER duckdb
  OPTIONS (provider 'credential_chain', chain 'cli;env', account_name 'acct');
CREATE SERVER az_mi TYPE 'azure' FOREIGN DATA WRAPPER duckdb
  OPTIONS (provider 'managed_identity', account_name 'acct', client_id '00000000-0000-0000-0000-000000000001');
-- service_principal: ids on the server, the client secret in the mapping.
CREATE SERVER az_sp TYPE 'azure' FOREIGN DATA WRAPPER duckdb
  OPTIONS (provider 'service_principal', tenant_id 't', client_id 'c', account_name 'acct', scope 'abfss://lake');
CREATE USER MAPPING FOR CURRENT_USER SERVER az_sp OPTIONS (client_secret 'regress-azure-1');
CREATE SERVER az_token TYPE 'azure' FOREIGN DATA WRAPPER duckdb
  OPTIONS (provider 'access_token', account_name 'acct', scope 'azure://tok');
CREATE USER MAPPING FOR CURRENT_USER SERVER az_token OPTIONS (access_token 'regress-azure-2');

SELECT name, type, provider, scope, secret_string FROM duckdb.secrets() ORDER BY name;

-- A server can wait for its mapping to bring a required sensitive option ...
CREATE SERVER az_waiting TYPE 'azure' FOREIGN DATA WRAPPER duckdb OPTIONS (provider 'access_token', account_name 'acct');
-- ... but a mapping without it is refused.
CREATE USER MAPPING FOR CURRENT_USER SERVER az_waiting OPTIONS (proxy_password 'regress-azure-3');
-- Required options on the server itself.
CREATE SERVER bad TYPE 'azure' FOREIGN DATA WRAPPER duckdb OPTIONS (provider 'service_principal', client_id 'c', account_name 'a');
CREATE SERVER bad TYPE 'azure' FOREIGN DATA WRAPPER duckdb OPTIONS (provider 'managed_identity');
-- Chain members are Azure's, not AWS's.
CREATE SERVER bad TYPE 'azure' FOREIGN DATA WRAPPER duckdb OPTIONS (provider 'credential_chain', account_name 'a', chain 'sso');

SELECT duckdb.drop_secret('azure_secret');
DROP SERVER az_chain, az_mi, az_sp, az_token, az_waiting CASCADE;
