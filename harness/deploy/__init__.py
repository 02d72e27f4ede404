"""What leaves the harness: a study's trained networks exported (ONNX and PyTorch), checked
against their rows and measured, with a model card.

May import ``study``, ``spec``, ``data``, ``networks``, ``store``, ``measure``, ``errors``
and ``methods``.
"""
