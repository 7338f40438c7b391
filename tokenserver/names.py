"""Account names: what is allowed in one, and the key under which variants are one name.

`Bob`, `BOB` and `bob` (and the full-width forms) are different strings but, to a
person reading a log or writing a rule, one name. `name_key` folds them
together (NFKC, casefold, NFKC again: the Unicode "NFKC_Casefold" recipe), so
the database can refuse a second account under a variant and the login
throttle counts every variant as one account.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_KEY", "MAX_NAME", "InvalidName", "check_name", "name_key"]

MAX_NAME = 255
# Folding can lengthen a name (ß -> ss, ﬃ -> ffi); the key column is this wide, and
# two names folding to the same first 255 characters count as one.
MAX_KEY = 255


class InvalidName(ValueError):
    pass


def check_name(name: str, what: str = "user name") -> str:
    """User, group and CI token names: no ':' (it splits Basic credentials), '/', spaces or controls."""
    if not name or len(name) > MAX_NAME:
        raise InvalidName(f"a {what} has 1 to {MAX_NAME} characters")
    if any(c in ":/" or c.isspace() or not c.isprintable() for c in name):
        raise InvalidName(f"a {what} may not contain ':', '/', spaces or control characters")
    return name


def name_key(name: str) -> str:
    """The form all spellings of one name share."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return folded[:MAX_KEY]
