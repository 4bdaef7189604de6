"""Speed: the product paths against the pytorch/examples way, the web app, sharding."""
