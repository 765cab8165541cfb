"""Simulated processor APIs (in-memory state behind real HTTP routes) for ``thred-bridge demo`` and tests."""
