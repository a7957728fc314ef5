"""Integration tests against the production topology: real Redis, PostgreSQL, Celery workers and
several daphne processes, each started on a free port in a temporary directory (docs/deployment.md).
"""
