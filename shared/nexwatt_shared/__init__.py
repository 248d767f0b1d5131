"""Nexwatt's common package: event contracts, topic registry and the plumbing every service uses.

Imported by the services, never run on its own.
"""
