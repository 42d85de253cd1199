"""Calendar reconcile: `plan` (pure), `state` (SQLite), `engine` (runs a plan)."""
