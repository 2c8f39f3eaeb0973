#!/bin/sh
# Runs once, on the first start of an empty data volume (the postgres image's initdb hook).
# One role and one database per service: Prefect and MLflow never see each other's tables, and
# neither holds the superuser password.
set -eu

create_db() {
    db="$1"
    password="$2"
    # psql's :'var' quoting keeps the password a literal, whatever characters it holds.
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v db="$db" -v password="$password" <<'SQL'
CREATE ROLE :"db" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"db";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
}

create_db prefect "$PREFECT_DB_PASSWORD"
create_db mlflow "$MLFLOW_DB_PASSWORD"
