"""Kafka plumbing: producer, topic admin, and the consumer runner every service uses."""
