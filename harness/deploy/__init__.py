"""What leaves the harness: a study's trained networks exported (ONNX, int8 ONNX and PyTorch),
checked against their rows (``export``), each with a model card measured on the study's
deployment targets (``card``).

May import ``study``, ``spec``, ``data``, ``networks``, ``store``, ``measure``, ``errors``
and ``methods``.
"""
