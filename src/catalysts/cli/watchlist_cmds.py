"""Watchlist commands: init, validate, schema, match."""
