"""Neither Lightning nor Hydra: the Stylizer, tiling, video, export and the ``fastnst`` command.
Never imports ``fastnst.training``, so the command starts fast."""
