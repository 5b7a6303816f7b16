"""Op-level profiles of a model: which operations are slowest, transform versus model.

One format for every runtime (``OpStat`` rows in a ``ProfileResult``, stored as
``profile.json``); converters for TensorFlow captures (``tensorflow``) and ONNX Runtime
session profiles (``onnx``); grouping of ops into ``transform`` and ``model``
(``grouping``); isolated profiling of a model in this process (``isolated``); capture under
load from a serving process (``capture``); terminal and JSON output (``render``).
"""

from __future__ import annotations
