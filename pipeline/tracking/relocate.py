"""A project store that moved with its folder: its artifact paths pointed into it again."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import unquote

# Where the project's own SQLite store records a path into its folder. MLflow stores them absolute
# (file:///.../mlruns/artifacts/...), so a moved or copied project's store points at the old folder.
PATH_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                ("logged_models", "artifact_location"), ("model_versions", "source"),
                ("model_versions", "storage_location"))


def relocate_store(store: Path, ours: tuple[str, ...]) -> str | None:
    """Point the project store's artifact paths into this folder's mlruns/ again, once the project
    was moved or copied (MLflow has no relative artifact root for a file store, and its proxied
    artifacts need a server to log through); the old folder, or None where nothing pointed away.
    `ours`: the project's experiments, whose paths tell where the store was (not a user's experiment
    stored elsewhere)."""
    db = store / "mlflow.db"
    if not db.exists():
        return None
    new = f"{store.as_uri()}/"
    with sqlite3.connect(db, timeout=30) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        found = None if "experiments" not in tables else connection.execute(
            f"SELECT artifact_location FROM experiments WHERE name IN ({', '.join('?' * len(ours))}) AND "
            "artifact_location LIKE 'file://%/mlruns/artifacts/%'", ours).fetchone()
        if found is None:
            return None
        # the last /mlruns/artifacts/: the project's own folder may have "mlruns" in its path
        old = found[0][: found[0].rindex("/mlruns/artifacts/") + len("/mlruns/")]
        if old == new:
            return None
        # the same folder also as a plain path (MLflow's Default experiment is stored so, unescaped)
        plain = (unquote(old.removeprefix("file://")), unquote(new.removeprefix("file://")))
        for before, after in ((old, new), plain):
            for table, column in PATH_COLUMNS:
                if table in tables:
                    connection.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE "
                                       f"substr({column}, 1, ?) = ?", (after, len(before) + 1, len(before), before))
    return unquote(old.removeprefix("file://")).removesuffix("/mlruns/")
