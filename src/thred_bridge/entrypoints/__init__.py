"""Thin edges: parse input, call the service, render the answer."""
