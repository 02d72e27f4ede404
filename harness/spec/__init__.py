"""The study spec: its fields (``schema``), reading a YAML file or a study's record into
them (``load``), and what the values mean (``checks``: names against the registries of
``data``, ``networks`` and ``methods``, storage URIs, trackers, ranges), all before
anything starts. ``code`` makes the user's folders importable; ``method_checks`` holds
the rules every method passes (no Ray, defaults within bounds).

May import ``data``, ``networks``, ``store``, ``errors`` and ``methods``; never Ray.
"""
