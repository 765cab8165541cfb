"""Thred, the accounting API: its wire format (`wire`, pure) and its client (`client`, I/O)."""
