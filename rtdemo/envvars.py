"""Numbers from environment variables, the host's settings: one parser, one kind of message.

    env_number(os.environ, "RTDEMO_MAX_CHATS", 8, integer=True)   # 8 when unset or blank

A value that is not a number, is below `minimum` or is infinite is a `UserError` naming the
variable, what it holds and what it takes, so the host sees at start which setting is wrong.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from rtdemo.errors import UserError


def env_number(
    env: Mapping[str, str] | None,
    name: str,
    default: float,
    *,
    minimum: float = 0,
    integer: bool = False,
    meaning: str = "0 means no limit",
) -> float:
    """`env[name]` as a number (an int when `integer`), `default` when unset or blank."""
    raw = (os.environ if env is None else env).get(name, "").strip()
    if not raw:
        return default
    what = "a whole number" if integer else "a number"
    try:
        value: float = int(raw) if integer else float(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not {what} ({meaning})") from None
    if not value >= minimum or math.isinf(value):
        raise UserError(f"{name}={raw!r}: give {what} of at least {minimum:g} ({meaning})")
    return value
