"""Every exception modelcaliper raises on purpose, in one hierarchy.

    CaliperError                     base class; ``exit_code`` is what the CLI returns
    ├── UsageError                   bad flags, config or files given by the user      (exit 2)
    │   ├── DataError                a dataset or signature file that cannot be used     (exit 2)
    │   └── MissingExtraError        an optional backend is not installed                (exit 2)
    ├── WireError                    a payload that breaks its wire format              (exit 2)
    │   │                            (the server answers HTTP 400 / INVALID_ARGUMENT)
    │   └── PayloadTooLargeError     a body or declared length beyond the allowed size
    │                                (HTTP 413 / RESOURCE_EXHAUSTED)
    └── TargetError                  the system under test failed or could not be reached (exit 1)
        └── TargetStartError         a server we start never became ready or exited early  (exit 2)

User errors are printed by the CLI as one line, ``error: <Class>: <message>``, never as a
traceback. Failed requests during a load run are *not* exceptions: they are recorded as data.
"""

from __future__ import annotations

__all__ = [
    "CaliperError",
    "DataError",
    "MissingExtraError",
    "PayloadTooLargeError",
    "TargetError",
    "TargetStartError",
    "UsageError",
    "WireError",
]


class CaliperError(Exception):
    """Base class of every error modelcaliper raises deliberately."""

    exit_code = 1


class UsageError(CaliperError):
    """The user asked for something invalid: a flag, a config value, a path."""

    exit_code = 2


class DataError(UsageError):
    """A dataset, signature or other input file cannot be used as given."""


class MissingExtraError(UsageError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package: "
            f"pip install 'modelcaliper[{extra}]'"
        )
        self.package = package
        self.extra = extra


class WireError(CaliperError):
    """A message that does not follow its wire format; ``tensor`` names the culprit if known."""

    exit_code = 2

    def __init__(self, message: str, *, tensor: str | None = None) -> None:
        text = f"tensor '{tensor}': {message}" if tensor is not None else message
        super().__init__(text)
        self.tensor = tensor
        self.detail = message


class PayloadTooLargeError(WireError):
    """A body, or a length it declares, exceeds the configured limit."""


class TargetError(CaliperError):
    """The target server failed, died or could not be reached."""

    exit_code = 1


class TargetStartError(TargetError):
    """A server we start (embedded or launched) exited or timed out before it was ready.

    Nothing has been sent yet, so this is an input error (exit 2). ``log_tail`` holds the
    server's last log lines and ``log_path`` its full log, when there is one.
    """

    exit_code = 2

    def __init__(self, message: str, *, log_tail: list[str] | None = None,
                 log_path: str | None = None) -> None:
        super().__init__(message)
        self.log_tail = list(log_tail or [])
        self.log_path = log_path
