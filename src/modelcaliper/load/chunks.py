"""Fixed-size column chunks for records, and the writer process that folds and writes them.

A ``Chunk`` is a set of numpy columns the event loop fills row by row (``Layout`` places the
columns in one buffer). When it is full, the recorder hands it over and goes on filling a
fresh set at once. Folding and writing a 65 536-row chunk (``load.sink``) takes 50–150 ms of
CPU; done on the loop it stalled every send due meanwhile, and done in a thread of the same
process it still took the interpreter lock and the core from the loop for milliseconds at a
time. So with ``background`` on, the sets are memory-mapped files and a full one is handed to
a **writer process** by name: the loop only sends a short message, and the writer maps the
same file, folds and writes it, resets it and gives it back for reuse.

The writer process:

- starts with the recorder when it writes a records file (a run's set-up, not its load,
  pays for the start), otherwise when the first chunk is full, so a recorder that never
  fills one costs no process (its records are folded in the recorder's process at close);
- runs as ``SCHED_IDLE`` (Linux; elsewhere at the lowest nice level), so it takes only CPU
  time the event loop leaves: on a machine with a free core it keeps up as the run goes; on
  a single busy core it falls behind, and the chunks it has not reached wait on disk —
  never in the recorder's memory, and the loop never waits for it — until the recorder
  closes, when it gets the CPU and catches up;
- ignores Ctrl-C (the recorder's process decides when to stop) and exits when the recorder
  closes its end of the pipe, or when the recorder's process dies;
- keeps a failure (a full disk, say) and reports it at close, where the recorder raises it;
  later chunks are still given back, so the run never blocks on a broken writer.

The recorder's process maps only the set being filled, so its memory stays at one chunk
however far behind the writer is. The files live in a ``.caliper-spill-*`` folder beside the
records file (or in the system's temporary folder when there is none) and are removed at close.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Chunk", "Layout", "WriterProcess", "writer_main"]

Arrays = dict[str, np.ndarray]

_CLOSE_POLL_S = 0.5  # how often close() checks that the writer process is still alive
# The writer ignores Ctrl-C and lowers its priority before importing anything: its start-up
# is CPU work too.
_WRITER_MAIN = """import os, signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
if hasattr(os, "SCHED_IDLE"):
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        pass
from modelcaliper.load.chunks import writer_main
writer_main()
"""


class Layout:
    """Column names, types and places in one buffer of ``rows`` records."""

    def __init__(self, rows: int, ints: Iterable[str], extra: Mapping[str, Any],
                 nan_columns: Iterable[str] = ()) -> None:
        if rows < 1:
            raise ValueError(f"a chunk needs ≥ 1 row, got {rows}")
        self.rows = rows
        self.dtypes: dict[str, np.dtype] = {name: np.dtype(np.int64) for name in ints}
        self.dtypes.update({name: np.dtype(t) for name, t in extra.items()})
        self.nan_columns = tuple(nan_columns)
        self.offsets: dict[str, int] = {}
        offset = 0
        for name, dtype in self.dtypes.items():
            offset = -(-offset // 64) * 64  # each column on its own cache line
            self.offsets[name] = offset
            offset += dtype.itemsize * rows
        self.nbytes = offset

    def views(self, buffer: Any) -> Arrays:
        """Every column as a writable array over ``buffer`` (a bytearray or an mmap)."""
        return {name: np.frombuffer(buffer, dtype, self.rows, self.offsets[name])
                for name, dtype in self.dtypes.items()}

    def heap(self) -> Arrays:
        """A fresh set of cleared columns in the process's own memory."""
        arrays = self.views(bytearray(self.nbytes))
        self.clear(arrays)
        return arrays

    def clear(self, arrays: Arrays) -> None:
        """Reset the columns whose "not reported" value is NaN."""
        for name in self.nan_columns:
            arrays[name].fill(np.nan)

    def empty(self) -> Arrays:
        """Zero-row columns (the schema of a file without records)."""
        return {name: np.empty(0, dtype) for name, dtype in self.dtypes.items()}

    @staticmethod
    def view(arrays: Arrays, size: int) -> Arrays:
        """The first ``size`` rows of every column."""
        return {name: array[:size] for name, array in arrays.items()}


class Chunk:
    """The set of columns being filled, in the process's memory or in a mapped spill file."""

    def __init__(self, layout: Layout, kind: str, spill_dir: Path | None = None,
                 spare: int = 0) -> None:
        self.layout = layout
        self.kind = kind
        self.size = 0
        self.rows_handed = 0  # rows handed over to be folded and written
        self.spill_dir = spill_dir
        self.files_created = 0
        self.file: Path | None = None
        self._free: list[Path] = []
        self.on_reuse: Any = None  # told before a full set is handed over (load.live)
        if spill_dir is not None:
            self._free.extend(self._new_file() for _ in range(spare))
        self.arrays: Arrays = self._open()

    @property
    def chunk_rows(self) -> int:
        """Records per set."""
        return self.layout.rows

    def _new_file(self) -> Path:
        assert self.spill_dir is not None
        path = self.spill_dir / f"{self.kind}-{self.files_created}.bin"
        self.files_created += 1
        with open(path, "w+b") as f:
            f.truncate(self.layout.nbytes)
            mapped = mmap.mmap(f.fileno(), self.layout.nbytes)
        self.layout.clear(self.layout.views(mapped))
        return path

    def _open(self) -> Arrays:
        if self.spill_dir is None:
            return self.layout.heap()
        path = self._free.pop() if self._free else self._new_file()
        with open(path, "r+b") as f:
            mapped = mmap.mmap(f.fileno(), self.layout.nbytes)
        self.file = path
        # The arrays keep the mapping alive; it is unmapped once the last of them is dropped.
        return self.layout.views(mapped)

    def give_back(self, paths: Iterable[Path]) -> None:
        """Files the writer has folded, written and cleared: reused before new ones are made."""
        self._free.extend(paths)

    def take_full(self) -> tuple[Path, int]:
        """Hand the filled spill file over (its name and row count) and map a fresh set."""
        assert self.file is not None
        if self.on_reuse is not None:
            self.on_reuse()
        full, size = self.file, self.size
        self.arrays = self._open()
        self.rows_handed += size
        self.size = 0
        return full, size

    def restart(self) -> None:
        """Clear the in-memory set after its rows were folded in place."""
        if self.on_reuse is not None:
            self.on_reuse()
        self.rows_handed += self.size
        self.layout.clear(self.arrays)
        self.size = 0


def _lowest_priority() -> None:
    """Run the calling process only on CPU time nothing else wants (see the module doc)."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
    with contextlib.suppress(OSError, AttributeError):
        os.nice(19)


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


class WriterProcess:
    """The recorder's side of the writer process: hand chunks over, collect them back."""

    def __init__(self, settings: Any, layouts: dict[str, Layout]) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_package_root(), env.get("PYTHONPATH", "")) if p)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _WRITER_MAIN, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send(("start", settings, layouts))
        self.dead = False

    def hand_over(self, kind: str, path: Path, size: int, codes: list[str],
                  kinds: list[str]) -> None:
        """Queue one full chunk (and the texts interned since the last one)."""
        if self.dead:
            return
        try:
            self._conn.send(("chunk", kind, str(path), size, codes, kinds))
        except OSError:
            self.dead = True

    def collect(self) -> list[tuple[str, Path]]:
        """Files the writer has given back since the last call, without waiting."""
        freed: list[tuple[str, Path]] = []
        try:
            while not self.dead and self._conn.poll(0):
                message = self._conn.recv()
                if message[0] == "free":
                    freed.append((message[1], Path(message[2])))
        except (EOFError, OSError):
            self.dead = True
        return freed

    def close(self) -> tuple[Any, BaseException | None, dict[str, float]]:
        """Tell the writer to finish; wait for it. Returns its statistics, its failure (if
        any) and its own use (``cpu_s``, ``peak_rss_mb``); raises if the process is gone
        without an answer."""
        if not self.dead:
            with contextlib.suppress(OSError):
                self._conn.send(("close",))
        try:
            while True:
                if not self._conn.poll(_CLOSE_POLL_S):
                    if self.process.poll() is not None and not self._conn.poll(0):
                        break
                    continue
                message = self._conn.recv()
                if message[0] == "closed":
                    _, stats, error, usage = message
                    self._finish()
                    return stats, error, usage
        except (EOFError, OSError):
            pass
        self._finish()
        raise RuntimeError(
            f"the records writer process ended (exit code {self.process.returncode}) before "
            "it had folded every record; the statistics and records file are incomplete")

    def _finish(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def make_spill_dir(near: Path | None) -> Path:
    """A new folder for spill files, beside ``near`` (a records file) when given."""
    if near is not None:
        near.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".caliper-spill-", dir=near.parent))
    return Path(tempfile.mkdtemp(prefix="caliper-spill-"))


def remove_spill_dir(path: Path | None) -> None:
    """Delete a spill folder and what is left in it."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MB (Linux: ``VmHWM``, which an exec resets)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def writer_main() -> None:
    """The writer process: fold and write the chunks it is handed, in order (module doc)."""
    from modelcaliper.load.sink import RecordSink

    _lowest_priority()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(sys.argv[1]))
    try:
        _, settings, layouts = conn.recv()
    except (EOFError, OSError):
        return
    sink = RecordSink(settings)
    error: BaseException | None = None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the recorder is gone: nobody is waiting for the result
        if message[0] == "chunk":
            _, kind, name, size, codes, kinds = message
            sink.add_texts(codes, kinds)
            layout = layouts[kind]
            with open(name, "r+b") as f:
                mapped = mmap.mmap(f.fileno(), layout.nbytes)
            arrays = layout.views(mapped)
            if error is None:
                try:
                    fold = sink.requests if kind == "requests" else sink.queries
                    fold(Layout.view(arrays, size))
                except BaseException as exc:  # noqa: BLE001 - reported at close
                    error = exc
            layout.clear(arrays)
            del arrays, mapped
            conn.send(("free", kind, name))
        elif message[0] == "close":
            if error is None:
                try:
                    sink.close(layouts["requests"].empty(), layouts["queries"].empty())
                except BaseException as exc:  # noqa: BLE001 - reported at close
                    error = exc
            usage = {"cpu_s": time.process_time(), "peak_rss_mb": _peak_rss_mb()}
            try:
                conn.send(("closed", sink.stats, error, usage))
            except Exception:  # noqa: BLE001 - an error that does not pickle
                conn.send(("closed", sink.stats, RuntimeError(repr(error)), usage))
            return
