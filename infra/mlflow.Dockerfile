# The MLflow tracking server of infra/docker-compose.yml: the official image plus what its
# Postgres backend store (psycopg2) and S3 artifact proxy (boto3) need.
FROM ghcr.io/mlflow/mlflow:v3.17.2

# boto3 as in requirements.lock; psycopg2-binary: no compiler in the image.
RUN pip install --no-cache-dir --disable-pip-version-check \
        psycopg2-binary==2.9.13 \
        boto3==1.44.5

# The image runs as root; the server needs no privileges.
RUN useradd --system --uid 10002 --no-create-home mlflow
USER mlflow
