#!/bin/sh
# Runs once, when the PostgreSQL volume is empty (docker-entrypoint-initdb.d): one database per system and one
# login role per job. The dashboard's login role holds nothing but membership of finsent_dashboard (created
# by migration 004: SELECT, and acknowledging alerts), granted by the init service after migrating.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" \
  -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v finsent_pw="$FINSENT_DB_PASSWORD" -v dash_pw="$DASHBOARD_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE finsent LOGIN CREATEROLE PASSWORD :'finsent_pw';  -- CREATEROLE: migration 004 creates finsent_dashboard
CREATE DATABASE finsent OWNER finsent;
CREATE ROLE finsent_dashboard_login LOGIN PASSWORD :'dash_pw';
SQL
