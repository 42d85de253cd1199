"""SMS backups: message text (`text`), the plan (`plan`), the persistent outbox
(`outbox`), the delivery rules (`dispatch`), providers (`providers`), APScheduler
timing (`scheduler`), and the configured parts built from the config (`factory`).

Importing this package loads nothing else: the config reads `sms.text` without
pulling in the outbox, SQLite or a thread pool.
"""
