"""The `wa-sessions` command line (placeholder until the CLI issue lands)."""
