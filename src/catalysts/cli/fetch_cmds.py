"""Fetching commands: fetch, feeds."""
