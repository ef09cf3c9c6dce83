"""params.yaml: its schema, reading and checking it, and `python -m pipeline.params` (check, size)."""
