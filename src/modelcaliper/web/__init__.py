"""The web UI of ``caliper ui``: ``create_app(database, token=...)`` returns the ASGI app."""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from modelcaliper.web.app import create_app

        return create_app
    raise AttributeError(name)
