"""The MLflow tracking store: where runs go and how they end, what a run logs, and `make ui`."""
