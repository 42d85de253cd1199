"""reminderd: never miss a follow-up you promised."""

__version__ = "0.1.0"
