"""The web app (``fastnst app``, the optional ``[app]`` extra): a small ASGI server with one hand-written
page, on top of ``fastnst.inference``. Photo, webcam and video modes."""
