"""Torch only: the transformation network, the VGG taps, the losses, colour, image I/O, style
images and the model-file format. Imports neither ``fastnst.training`` nor ``fastnst.inference``."""
