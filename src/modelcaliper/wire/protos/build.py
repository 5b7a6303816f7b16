"""Regenerate the committed ``*_pb2.py`` modules from the ``.proto`` files beside this file.

Run with ``make protos`` (needs the ``test`` extra, which pins grpcio-tools). The generated
modules are committed so that installing modelcaliper needs no protobuf compiler; a test
checks they match what this script produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_FILES = ("tfserving.proto", "openinference.proto")


def generate(out_dir: Path) -> list[Path]:
    """Compile every declaration file into ``out_dir`` and return the written modules."""
    import grpc_tools
    from grpc_tools import protoc  # test-only dependency

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{HERE}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *(str(HERE / name) for name in PROTO_FILES),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    return [out_dir / name.replace(".proto", "_pb2.py") for name in PROTO_FILES]


if __name__ == "__main__":
    written = generate(HERE)
    sys.stdout.write("".join(f"wrote {p.relative_to(HERE.parents[3])}\n" for p in written))
