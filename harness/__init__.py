"""The harness: studies of compression methods, from a spec to measured Pareto fronts.

Its subpackages are layers; each imports only those below it (``pyproject.toml``'s
import-linter contracts, checked by tests/test_layers.py):

- ``cli``: the ``harness`` command (parses arguments, calls the layers below).
- ``deploy``: what leaves the harness: exported networks and their cards.
  ``method_testing`` (beside it) is the check that outside method authors import.
- ``study``: running studies on Ray Tune: the sweep, the trial, the search, the results
  writer, teachers, measuring finished studies again.
- ``spec``: the study spec: reading it, checking every field against what is registered.
- ``data``, ``networks``, ``store``, ``measure``: independent of one another: data sets,
  networks by name, where results live, what a network costs.
- ``errors``: the error classes every layer raises (one line, exit status 2).

``methods`` (plain PyTorch) is below all of them; ``reports`` reads results through
``store`` only.
"""
