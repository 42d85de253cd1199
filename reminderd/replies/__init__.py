"""Replies from the phone: the command grammar of an SMS reply (`grammar`, pure), the
HTTP endpoint Twilio posts inbound SMS to (`webhook`), and the poller that lists them
(`poll`).

Importing this package loads nothing else: the grammar stays free of HTTP and twilio.
"""
