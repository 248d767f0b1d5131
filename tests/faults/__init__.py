"""Fault tests: a service as a real process keeps every record while one server of the local
stack (Kafka, PostgreSQL, Redis) is stopped and started under it, mid-stream.

They restart the local stack's own servers (`deploy/local/stack.py restart|stop|start`), so they
are skipped when the servers come from elsewhere, and they leave every server up again. Each
test uses a database and a consumer group of its own, so its counts are exact.
"""
