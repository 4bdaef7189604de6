"""The one exception type that reaches users as a one-line message."""


class FastNSTError(Exception):
    """A problem the user can act on: bad input, missing file, wrong model.

    Entry points print ``error: <message>`` and exit non-zero instead of a traceback. The message
    names the library's argument (``strength must be ...``); ``param`` names it for the entry point,
    which adds its own spelling of it (``--strength`` on the command line, ``loss.x=`` for Hydra).
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param
