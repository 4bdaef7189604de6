"""The one exception type that reaches users as a one-line message."""


class FastNSTError(Exception):
    """A problem the user can act on: bad input, missing file, wrong model.

    Entry points print ``error: <message>`` and exit non-zero instead of a traceback.
    """
