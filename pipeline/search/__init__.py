"""Searching a setting's neighbourhood with Optuna: `make search NAME=<entry>` (issue 35)."""
