"""The state store: what was written to the calendar, the SMS outbox, small values.

`protocol` is the interface the rest of reminderd uses (`StateStore`),
`schema` the versioned migrations every backend runs, `sqlite` the SQLite
store, `keys` the names of the small values in `meta` and their helpers.
"""
