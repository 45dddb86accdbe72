"""Digest command: digest."""
