"""Storage: S3 objects (``s3``) and MLflow tracking (``tracking``)."""
