"""The error type for "the user can fix this".

Library code raises :class:`UserError` with a message that says what went
wrong and what to do next; the command line (``audioscope.cli``) prints it
on one line, without a traceback, and exits with status 2. Library code
never decides exit codes or imports the command line.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; printed without a traceback.

    The message must say what went wrong and what to do next.
    """
