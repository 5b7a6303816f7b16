"""The committed generated protobuf modules are exactly what the declaration files produce."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from modelcaliper.wire.protos import build

_GENERATE = (
    "import pathlib, sys\n"
    "from modelcaliper.wire.protos.build import generate\n"
    "print('\\n'.join(p.name for p in generate(pathlib.Path(sys.argv[1]))))\n"
)


def test_committed_modules_match_a_fresh_generation(tmp_path):
    # build.generate runs in a fresh interpreter: grpc_tools' in-process compiler crashes
    # once TensorFlow (imported by the interop tests) has loaded its own protobuf runtime.
    done = subprocess.run([sys.executable, "-c", _GENERATE, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["tfserving_pb2.py", "openinference_pb2.py"]
    for fresh in sorted(tmp_path.iterdir()):
        committed = Path(build.HERE) / fresh.name
        assert committed.is_file(), f"{fresh.name} is generated but not committed"
        assert committed.read_text() == fresh.read_text(), (
            f"{fresh.name} is stale; run `make protos` and commit the result"
        )
    # Every committed generated file is one the generator still writes.
    committed = {p.name for p in Path(build.HERE).glob("*_pb2.py*")}
    assert committed == {p.name for p in tmp_path.iterdir()}
