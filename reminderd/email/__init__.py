"""Email alerts: the message (`message`, pure) and the SMTP sender (`smtp`).

Importing this package loads nothing else, like `reminderd.sms`: the
message builder never pulls in `smtplib` or `ssl`, and the sender never
pulls in `icalendar`.
"""
