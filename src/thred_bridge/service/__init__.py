"""Use cases. Async; the only layer that opens transactions."""
