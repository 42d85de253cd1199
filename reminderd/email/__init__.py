"""Email alerts: the message (`message`, pure) and the SMTP sender (`smtp`).

Importing this package loads nothing else, like `reminderd.sms`: the
message builder never pulls in `smtplib` or `ssl`, and the sender never
pulls in `icalendar`.
"""


def mask_address(addr: str) -> str:
    """`a***@example.com`: an address as logs and `status` may show it."""
    local, _, domain = addr.rpartition("@")
    return f"{local[:1]}***@{domain}" if domain and local else "***"
