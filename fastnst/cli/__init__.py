"""The top layer: the ``fastnst`` command. It parses, checks and dispatches; the work is in inference and app."""
