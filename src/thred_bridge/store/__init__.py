"""Persistence: the connections, the inbox (the queue), the records (outbox and mapping), leases."""
