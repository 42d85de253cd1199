"""Phone numbers: parse to E.164 (libphonenumber rules) and mask for logs."""

from __future__ import annotations

import functools
import re

import phonenumbers

from .errors import InvalidValue


@functools.lru_cache(maxsize=65536)
def normalise(text: str, region: str | None = None) -> str:
    """`+30 21 0123 4567` -> `+302101234567`; a number without `+` needs `region`.

    Raises InvalidValue when the number cannot be a real one.
    """
    raw = text.strip()
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        if not raw.startswith("+") and region is None:
            raise InvalidValue(
                f"phone '{text}' has no country code; write it as +<country><number> "
                "or set phone_region in the config"
            ) from None
        raise InvalidValue(f"phone '{text}' is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidValue(f"phone '{text}' is not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask(number: str | None) -> str:
    """Keep the country code and the last 2 digits: `+30********67`."""
    if not number:
        return "-"
    digits = re.sub(r"\D", "", number)
    if len(digits) <= 4:
        return "*" * len(digits)
    try:
        cc = str(phonenumbers.parse("+" + digits).country_code)
    except phonenumbers.NumberParseException:
        cc = digits[:2]
    return "+" + cc + "*" * (len(digits) - len(cc) - 2) + digits[-2:]


def valid_region(region: str) -> bool:
    return region.upper() in phonenumbers.SUPPORTED_REGIONS
