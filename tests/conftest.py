"""Shared fixtures for the whole suite."""

from __future__ import annotations

import os

# Keep TensorFlow quiet and deterministic in tests that import it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
