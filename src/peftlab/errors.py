"""One exception for bad user input; the CLI prints its message as one line and exits 2.

Raise `BadInput("what was wrong: what to do")` anywhere input is rejected; never for bugs.
"""


class BadInput(Exception):
    """Input the user can fix. The message is one line: what was wrong, and what to do instead."""
