"""Networks by name: the zoo (``zoo``: LeNet-5, CIFAR ResNets, VGG, MobileNet, DenseNet...,
timm-style ``@register_model``), and building a spec's network from the zoo, torchvision
or the user's factory with its features and classifier split (``build``), and the network
as deployed, its input normalisation inside (``deployed``).

May import ``errors`` and ``methods``; no other harness subpackage, never Ray.
"""
