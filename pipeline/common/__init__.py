"""What every stage and tool shares: running a main with one-line errors, atomic writes, strict reads of state files."""
