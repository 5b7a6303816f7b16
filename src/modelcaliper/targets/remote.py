"""A server someone else runs: ``ExistingServer``, and where its metrics probably are."""

from __future__ import annotations

from dataclasses import dataclass

from modelcaliper.targets.base import Endpoint, TargetBase

__all__ = ["ExistingServer"]


@dataclass(frozen=True)
class ExistingServer(TargetBase):
    """A server someone else runs, at ``url``, speaking ``protocol``."""

    url: str
    protocol: str
    model: str

    def open(self) -> Endpoint:
        """Ask the server for the model's metadata: proves it is up and yields the signature."""
        from modelcaliper.load.health import probe_target

        signature = probe_target(self.url, self.protocol, self.model)
        return Endpoint(self.url, self.protocol, self.model, signature)

    def close(self) -> None:
        """Nothing to release: the server is not ours."""
