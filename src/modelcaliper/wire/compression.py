"""Body compression shared by HTTP (``Content-Encoding``) and gRPC (per-call compression).

``decompress`` never allocates more than ``max_bytes`` however small the compressed input:
a few kilobytes of gzip can expand to gigabytes, and a server must not let a client do that.
"""

from __future__ import annotations

import zlib
from typing import Literal

from modelcaliper.errors import PayloadTooLargeError, UsageError, WireError
from modelcaliper.wire.base import DEFAULT_MAX_BODY_BYTES

__all__ = ["COMPRESSIONS", "Compression", "compress", "decompress", "parse_compression"]

Compression = Literal["none", "gzip", "deflate", "zstd"]
COMPRESSIONS: tuple[Compression, ...] = ("none", "gzip", "deflate", "zstd")

DEFAULT_LEVELS = {"gzip": 6, "deflate": 6, "zstd": 3}
"""Default levels: zlib's own default, and zstd's."""

_LEVEL_RANGES = {"gzip": (0, 9), "deflate": (0, 9), "zstd": (1, 22)}


def parse_compression(name: str) -> Compression:
    """Validate a compression name given by a user (``identity`` means ``none``)."""
    value = name.strip().lower()
    if value in ("identity", ""):
        value = "none"
    if value not in COMPRESSIONS:
        raise UsageError(f"unknown compression '{name}'; choose one of {', '.join(COMPRESSIONS)}")
    return value  # type: ignore[return-value]


def _check_level(codec: str, level: int | None) -> int:
    if level is None:
        return DEFAULT_LEVELS[codec]
    low, high = _LEVEL_RANGES[codec]
    if not low <= level <= high:
        raise UsageError(f"{codec} level must be between {low} and {high}, got {level}")
    return level


def compress(data: bytes, codec: Compression, level: int | None = None) -> bytes:
    """Compress ``data``; ``deflate`` is the zlib format, as HTTP and gRPC define it."""
    if codec == "none":
        return data
    lvl = _check_level(codec, level)
    if codec == "gzip":
        obj = zlib.compressobj(lvl, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return obj.compress(data) + obj.flush()
    if codec == "deflate":
        return zlib.compress(data, lvl)
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=lvl).compress(data)
    raise UsageError(f"unknown compression '{codec}'")


def decompress(data: bytes, codec: Compression, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> bytes:
    """Decompress ``data``, refusing output beyond ``max_bytes`` and truncated input."""
    if codec == "none":
        return data
    if codec in ("gzip", "deflate"):
        # wbits 16+ = gzip only; 32+ would auto-detect, but HTTP names the format exactly.
        wbits = 16 + zlib.MAX_WBITS if codec == "gzip" else zlib.MAX_WBITS
        obj = zlib.decompressobj(wbits)
        try:
            out = obj.decompress(data, max_bytes + 1)
        except zlib.error as exc:
            raise WireError(f"corrupt {codec} body: {exc}") from None
        if len(out) > max_bytes:
            raise PayloadTooLargeError(f"{codec} body expands beyond the {max_bytes}-byte limit")
        if not obj.eof:
            raise WireError(f"truncated {codec} body")
        return out
    if codec == "zstd":
        import io

        import zstandard

        # A streaming reader, so a tiny frame that declares or expands to a huge size is cut
        # off at max_bytes + 1 instead of being allocated whole.
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(data), read_across_frames=True
        )
        chunks: list[bytes] = []
        total = 0
        try:
            while total <= max_bytes:
                chunk = reader.read(min(1 << 20, max_bytes + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        except zstandard.ZstdError as exc:
            raise WireError(f"corrupt zstd body: {exc}") from None
        if total > max_bytes:
            raise PayloadTooLargeError(f"zstd body expands beyond the {max_bytes}-byte limit")
        if data and not _zstd_complete(data):
            raise WireError("truncated zstd body")
        return b"".join(chunks)
    raise WireError(f"unsupported compression '{codec}'")


def _zstd_complete(data: bytes) -> bool:
    """True when the first zstd frame in ``data`` is whole (a cut frame reads back short).

    Only called once the streaming read proved the output fits the limit, so decoding again
    here is bounded too.
    """
    import zstandard

    obj = zstandard.ZstdDecompressor().decompressobj()
    try:
        obj.decompress(data)
    except zstandard.ZstdError:
        return False
    return bool(obj.eof)
