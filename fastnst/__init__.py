"""fastnst: fast neural style transfer."""

from fastnst.core.version import __version__

__all__ = ["Stylizer", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import fastnst` stays light for the CLI and `fastnst.Stylizer` still works.
    if name == "Stylizer":
        from fastnst.inference.stylizer import Stylizer

        return Stylizer
    raise AttributeError(name)
