"""Two exceptions the CLI turns into one line: bad user input (exit 2) and a stop the user can act on (exit 1).

Raise `BadInput("what was wrong: what to do")` anywhere input is rejected; never for bugs. Raise
`Stopped("what happened: what to do")` when the world, not the input, ends the work (a full disk) after what finished
is stored.
"""


class BadInput(Exception):
    """Input the user can fix. The message is one line: what was wrong, and what to do instead."""


class Stopped(Exception):
    """Work stopped for a reason outside the input, with everything finished stored. One line; exit 1."""
