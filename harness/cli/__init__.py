"""The ``harness`` command: ``main`` parses the arguments and calls the layers below;
``listing`` prints what is registered.

May import every other harness subpackage and ``reports``; nothing imports it.
"""
