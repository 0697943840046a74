-- Run once by the postgres image when its volume is first initialized (as POSTGRES_USER, who owns the result).
-- MLflow gets a database of its own: its tables and Optuna's would share `alembic_version` in one database.
CREATE DATABASE mlflow;
