"""Suites: the typed schema and the safe loader with located error messages."""
