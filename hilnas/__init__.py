"""hilnas: hardware-in-the-loop neural architecture search.

The code lives in top-level folders mapped onto this namespace: ``hilnas.protos``,
``hilnas.agent`` (device side, no torch), ``hilnas.server`` (central side) and
``hilnas.searchers`` (search spaces and methods).
"""
__version__ = "0.1.0"
