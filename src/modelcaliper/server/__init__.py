"""The embedded inference server: model runtimes, batching, timing and the protocol front ends.

Nothing heavy is imported here; ``modelcaliper.server.runtimes`` opens models and loads
TensorFlow or ONNX Runtime only when a model of that kind is opened.
"""

from __future__ import annotations
