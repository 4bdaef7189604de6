"""fastnst: fast neural style transfer."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `import fastnst` stays light for the CLI and `fastnst.Stylizer` still works.
    if name == "Stylizer":
        from fastnst.inference.stylizer import Stylizer

        return Stylizer
    raise AttributeError(name)
