"""The production profile of the local stack: PostgreSQL, SeaweedFS (S3) and MLflow's
basic-auth server on loopback (`mlops stack up --profile production`, see profile.py)."""
