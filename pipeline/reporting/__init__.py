"""The report's building blocks: results over seeds, statistics, tables and figures (pure: the
report stage does the I/O)."""
