"""Shared pytest configuration. Fixtures for each local service live in ``tests/support/``."""
