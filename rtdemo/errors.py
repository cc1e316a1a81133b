"""Errors a user can act on.

`UserError` carries a message meant for a person: the CLI prints it without a traceback and exits
with status 2; the UI shows it in place. Anything else that escapes is a bug.
"""


class UserError(Exception):
    """A problem with the user's input or environment, with a message that says what to change."""
