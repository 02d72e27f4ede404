"""Data sets: the registry and loaders (``datasets``: embedded digits, MNIST, CIFAR, image
folders, the user's loaders; seeded train/validation/test splits), the splits on a
trial's device with augmentation (``batches``), and grids of generated samples
(``samples``).

May import ``errors`` and ``methods.registry``; no other harness subpackage, never Ray.
"""
