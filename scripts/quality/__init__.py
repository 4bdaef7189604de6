"""Quality: held-out losses, the independent judge, side-by-side with the peer, Gatys, flicker, experiments."""
