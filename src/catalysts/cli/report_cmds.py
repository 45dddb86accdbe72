"""Report commands: status, show."""
