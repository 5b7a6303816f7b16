"""The settings of one ``caliper run``: flags, a config file and the Python API, merged and checked.

Every option of ``caliper run`` has a name: its long flag without the dashes, with ``_`` or
``-`` between words (``--batch-size`` is ``batch_size`` or ``batch-size``); the model path
is ``model_path``. A config file (``-c caliper.toml``, ``.json``, or ``.yaml`` when PyYAML
is installed) is one flat table of such names; an unknown name is refused with the closest
known one ("did you mean"). Flags given on the command line override the file; the Python
API's keyword arguments are options of the same names.

``build_spec`` validates the merged options once, before anything starts, into a frozen
``RunSpec``: which target (embedded, existing, launched), the ``LoadSpec``, the parsed
assertions, the data and where results go. ``--print-config`` prints the merged options
(``render``) in a form ``-c`` reads back.
"""

from __future__ import annotations

import argparse
import difflib
import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcaliper.errors import DataError, UsageError

__all__ = ["CLI_ONLY", "DEFAULT_PROTOCOL", "DEFAULT_RPS", "FORMATS", "PROTOCOLS", "RunSpec",
           "apply_options", "build_spec", "load_config_file", "mark_defaults", "option_table",
           "render", "resolve_encoding", "take_explicit"]

DEFAULT_PROTOCOL = "v2-grpc"
"""Protocol of an embedded run when ``--protocol`` is not given."""
DEFAULT_RPS = 50.0
"""Rate of a constant, Poisson or bursty run when ``--rps`` is not given."""
FORMATS = ("toml", "json", "yaml")
"""Formats ``render`` writes (``--config-format``)."""
CLI_ONLY = frozenset({"help", "config", "print_config", "config_format"})
"""Options that steer the command itself and cannot come from a file or the API."""
_RATED = ("constant", "poisson", "bursty")
PROTOCOLS = ("tfserving-rest", "tfserving-grpc", "v2-rest", "v2-grpc")
"""The APIs ``caliper run`` speaks (``--protocol``)."""
_REST_ENCODINGS = {"tfserving-rest": ("rows", "columnar"), "v2-rest": ("json", "binary")}


# ---------------------------------------------------------------------- options and defaults


class _Default:
    """A parser default, wrapped so that a flag given explicitly can be told apart from it."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


def mark_defaults(parser: argparse.ArgumentParser) -> None:
    """Wrap every non-None default so ``take_explicit`` can see which flags were typed."""
    for action in parser._actions:
        if action.default is not None and action.default is not argparse.SUPPRESS \
                and not isinstance(action.default, _Default):
            action.default = _Default(action.default)


def take_explicit(args: argparse.Namespace) -> set[str]:
    """Unwrap the defaults in ``args`` in place; the dests given on the command line."""
    explicit = set()
    for dest, value in vars(args).items():
        if isinstance(value, _Default):
            setattr(args, dest, value.value)
        elif value is not None:
            explicit.add(dest)
    return explicit


def option_table(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every settable option by name (``batch_size``), to the parser action that holds it."""
    table: dict[str, argparse.Action] = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        name = (longs[0][2:] if longs else action.dest).replace("-", "_")
        if name not in CLI_ONLY and action.dest not in CLI_ONLY:
            table[name] = action
    return table


def _normal(key: Any) -> str:
    return str(key).strip().lstrip("-").replace("-", "_")


def _unknown(key: str, known: Iterable[str], source: str) -> UsageError:
    close = difflib.get_close_matches(_normal(key), list(known), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else " (see 'caliper run --help')"
    return UsageError(f"unknown option '{key}' in {source}{hint}")


def _coerce(action: argparse.Action, value: Any, key: str, source: str) -> Any:
    """A value from a file or the API as argparse would have stored it for ``action``."""
    where = f"option '{key}' in {source}"
    if isinstance(value, Mapping):
        raise UsageError(f"{where} must be a value, not a table")
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, got {value!r}")
        return value if isinstance(action, argparse._StoreTrueAction) else not value
    if isinstance(action, argparse._AppendAction):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        return [_scalar(action, item, where) for item in items]
    if isinstance(value, (list, tuple)):
        raise UsageError(f"{where} takes one value, got a list")
    return _scalar(action, value, where)


def _scalar(action: argparse.Action, value: Any, where: str) -> Any:
    if isinstance(value, (list, tuple, Mapping)) or value is None:
        raise UsageError(f"{where} must be a number or text, got {value!r}")
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if action.type is not None:
        try:
            converted = action.type(text)  # type: ignore[operator]
        except (TypeError, ValueError):
            raise UsageError(f"{where} must be a {getattr(action.type, '__name__', 'value')}, "
                             f"got {value!r}") from None
    else:
        converted = text
    if action.choices is not None and converted not in action.choices:
        raise UsageError(f"{where} must be one of {', '.join(map(str, action.choices))}, "
                         f"got {value!r}")
    return converted


def apply_options(args: argparse.Namespace, options: Mapping[str, Any],
                  table: Mapping[str, argparse.Action], *, source: str,
                  keep: Iterable[str] = ()) -> None:
    """Set ``options`` (by name) on ``args``, except the dests in ``keep`` (flags typed)."""
    kept = set(keep)
    for key, value in options.items():
        name = _normal(key)
        action = table.get(name)
        if action is None:
            raise _unknown(str(key), table, source)
        if action.dest not in kept:
            setattr(args, action.dest, _coerce(action, value, str(key), source))


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The flat table of a ``.toml``, ``.json``, ``.yaml`` or ``.yml`` config file."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"config file {file} does not exist")
    suffix = file.suffix.lower()
    text = file.read_text(encoding="utf-8")
    try:
        if suffix == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise UsageError(f"config file {file} is YAML, which needs PyYAML (pip install "
                                 "'modelcaliper[yaml]'); or write it as TOML or JSON") from None
            data = yaml.safe_load(text) or {}
        else:
            raise UsageError(f"config file {file} must end in .toml, .json, .yaml or .yml")
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - each parser has its own error class
        detail = " ".join(str(exc).split())
        raise UsageError(f"config file {file} cannot be parsed: {detail}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {file} must hold a table of options, got "
                         f"{type(data).__name__}")
    return data


def _scalar_text(value: Any, fmt: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar_text(v, fmt) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def render(options: Mapping[str, Any], fmt: str = "toml") -> str:
    """The options as TOML, JSON or YAML, readable again with ``-c`` (None values left out)."""
    if fmt not in FORMATS:
        raise UsageError(f"--config-format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    present = {k: v for k, v in options.items() if v is not None and v != []}
    if fmt == "json":
        return json.dumps(present, indent=2, ensure_ascii=False) + "\n"
    sep = " = " if fmt == "toml" else ": "
    return "".join(f"{key}{sep}{_scalar_text(value, fmt)}\n" for key, value in present.items())


# ---------------------------------------------------------------------- the validated spec


@dataclass(frozen=True)
class RunSpec:
    """One run's validated settings (see the module docstring); ``options`` as merged."""

    options: dict[str, Any]
    target_kind: str
    protocol: str
    model_path: Path | None
    target_url: str | None
    model_name: str | None
    model_version: str | None
    launch: str | None
    ready_url: str | None
    ready_timeout_s: float
    metrics_url: str | None
    scrape_metrics: bool
    server_args: tuple[str, ...]
    cpus: Any  # targets.affinity.CpuPlan, or None for "the target's default"
    encoding: str
    compression: str
    level: int | None
    pool_mb: float
    signature_path: str | None
    data: str | None
    group_by: str | None
    rows: int | None
    selection: Any  # workload.loader.DataOptions
    profile: bool
    profiler_address: str | None
    check_outputs: bool
    expect_model: bool
    rtol: float
    atol: float
    profile_groups: tuple[str, ...]
    load: Any  # load.spec.LoadSpec
    assertions: tuple[Any, ...]
    store: bool
    runs_dir: Path
    db_path: Path
    tags: tuple[str, ...]
    json_path: str | None
    hlog_path: str | None
    junit_path: str | None
    records_dir: str | None
    quiet: bool

    @property
    def run_name(self) -> str:
        """The model name a run id is made from, known before the target starts."""
        if self.model_name:
            return self.model_name
        if self.model_path is not None:
            return self.model_path.stem if self.model_path.is_file() else self.model_path.name
        return "model"

    def to_dict(self) -> dict[str, Any]:
        """What ``spec.json`` keeps: the merged options and what they were resolved to."""
        return {"options": {k: v for k, v in self.options.items() if v is not None},
                "target_kind": self.target_kind, "model_version": self.model_version,
                "protocol": self.protocol, "encoding": self.encoding,
                "compression": self.compression, "load": self.load.describe(),
                "assertions": [a.expression for a in self.assertions],
                "pinning": self.cpus.to_dict() if self.cpus is not None else None}


def resolve_encoding(protocol: str, encoding: str | None) -> str:
    """The wire encoding (one of ``ENCODINGS``) for a protocol and an ``--encoding`` choice."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    choices = _REST_ENCODINGS.get(protocol)
    if choices is None:
        if encoding is not None:
            raise UsageError(f"--encoding does not apply to {protocol} (protobuf only)")
        return protocol
    chosen = (encoding or choices[0]).strip().lower()
    if chosen not in choices:
        raise UsageError(f"--encoding for {protocol} must be {' or '.join(choices)}, "
                         f"got {encoding!r}")
    return f"{protocol} {chosen}"


def _target_kind(a: argparse.Namespace) -> str:
    if a.launch is not None:
        missing = [flag for flag, value in (("--ready-url", a.ready_url),
                                            ("--protocol", a.protocol), ("--model", a.model))
                   if not value]
        if missing:
            raise UsageError(f"--launch needs {', '.join(missing)} too (e.g. --ready-url "
                             "http://127.0.0.1:8501/v1/models/NAME --protocol tfserving-rest "
                             "--model NAME)")
        return "launched"
    if a.ready_url is not None:
        raise UsageError("--ready-url applies to --launch \"COMMAND\"; drop it or add --launch")
    if a.target is not None:
        if not a.protocol or not a.model:
            raise UsageError(f"--target needs --protocol ({' | '.join(PROTOCOLS)}) and "
                             "--model NAME")
        return "existing"
    if a.model_path is None:
        raise UsageError("nothing to run against: give a model path (started for the run), "
                         "--target URL (a running server) or --launch \"COMMAND\"")
    return "embedded"


def _positive_float(text: Any, flag: str) -> float:
    try:
        value = float(str(text))
    except ValueError:
        raise UsageError(f"{flag} must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise UsageError(f"{flag} must be > 0, got {text!r}")
    return value


def _tolerance(value: Any, flag: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} must be a number ≥ 0, got {value!r}") from None
    if not number >= 0:
        raise UsageError(f"{flag} must be a number ≥ 0, got {value!r}")
    return number


def _data_options(a: argparse.Namespace, load: Any) -> Any:
    """The data selection of a run; with fan-out, a ``--group-by`` column makes real queries."""
    from modelcaliper.workload.loader import DataOptions

    query_size = a.query_size
    if load.candidates and a.group_by and query_size is None:
        query_size = load.candidates  # each unit of K candidates is one real query
    if query_size is not None and load.candidates and query_size != load.candidates:
        raise UsageError(f"--query-size {query_size} must equal --candidates "
                         f"{load.candidates} (a query is the candidates of one unit)")
    return DataOptions(
        data=a.data, sample=a.sample, fraction=a.fraction, where=a.where, group_by=a.group_by,
        query_size=query_size, small_groups=a.small_groups, stratify=a.stratify,
        maps=tuple(a.map or ()), map_file=a.map_file, data_seed=load.data_seed)


def build_spec(args: argparse.Namespace, table: Mapping[str, argparse.Action]) -> RunSpec:
    """Validate the merged options once: a ``RunSpec``, or a one-line UsageError/DataError."""
    from modelcaliper.assertions import check_applicable, parse_assertions
    from modelcaliper.load.flags import spec_from_args
    from modelcaliper.units import parse_duration
    from modelcaliper.wire.compression import parse_compression

    a = args
    kind = _target_kind(a)
    if a.data and a.synthetic:
        raise UsageError("--data and --synthetic are alternatives; keep one")
    if kind != "embedded" and a.server_args:
        raise UsageError("--server-args applies to an embedded run (a model path without "
                         "--target or --launch)")
    if kind == "existing" and (a.server_cpus or a.client_cpus or a.no_pin):
        raise UsageError("--server-cpus, --client-cpus and --no-pin apply to servers caliper "
                         "starts (a model path, or --launch)")
    if str(a.arrival).strip().lower() in _RATED and a.rps is None:
        a.rps = f"{DEFAULT_RPS:g}"
    protocol = a.protocol = a.protocol or DEFAULT_PROTOCOL
    load = spec_from_args(a)
    if a.check_outputs or a.expect_model:
        import dataclasses

        if load.workers != 1:
            raise UsageError("--check-outputs and --expect-model run in one generator process; "
                             "drop --workers")
        load = dataclasses.replace(load, keep_bodies=True)  # answers are decoded and checked
    if a.expect_model and a.model_path is None:
        raise UsageError("--expect-model compares answers with the model run in-process; "
                         "give the model path (caliper run MODEL ...)")
    if a.duration is None:  # shown resolved by --print-config and kept in spec.json
        a.duration = f"{load.duration_s:g}s"
    encoding = resolve_encoding(protocol, a.encoding)
    compression = parse_compression(a.compression)
    if protocol.endswith("-grpc") and compression == "zstd":
        raise UsageError(f"--compression zstd is HTTP-only; {protocol} takes none, gzip or "
                         "deflate")
    pool_mb = _positive_float(a.pool_mb, "--pool-mb")
    rows = None
    if a.rows is not None:
        try:
            rows = int(str(a.rows))
        except ValueError:
            raise UsageError(f"--rows must be a whole number, got {a.rows!r}") from None
        if rows < 1:
            raise UsageError(f"--rows must be ≥ 1, got {rows}")
    assertions = parse_assertions(a.assertions)
    check_applicable(assertions, fanout=load.fanout, deadline=bool(load.deadline_s))
    model_path, model_version = None, a.model_version
    if a.model_path is not None:
        from modelcaliper.server.runtimes import resolve_artifact

        # DataError for a missing or unsupported path; the version a base path resolves to
        # is the one served (and recorded).
        _, _, label = resolve_artifact(a.model_path, a.model_version)
        model_path, model_version = Path(a.model_path), model_version or label
    if a.signature and not Path(a.signature).is_file():
        raise DataError(f"signature file {a.signature} does not exist")
    cpus = None
    if kind == "embedded" or a.server_cpus or a.client_cpus or a.no_pin:
        from modelcaliper.targets.affinity import plan_cpus

        cpus = plan_cpus(a.server_cpus, a.client_cpus, pin=not a.no_pin)
    tags = tuple(dict.fromkeys(str(t).strip() for t in (a.tag or ())))
    if tags:
        from modelcaliper.store.sqlite import _check_tag  # the store's own rule for tags

        for tag in tags:
            _check_tag(tag)
    if a.no_metrics and a.metrics_url:
        raise UsageError("--metrics-url and --no-metrics contradict each other; keep one")
    ready_timeout_s = parse_duration(a.ready_timeout, "--ready-timeout")
    if ready_timeout_s <= 0:
        raise UsageError(f"--ready-timeout must be > 0, got {a.ready_timeout!r}")
    runs_dir = Path(a.runs_dir)
    options = {name: getattr(a, action.dest) for name, action in table.items()}
    return RunSpec(
        options=options, target_kind=kind, protocol=protocol, model_path=model_path,
        target_url=a.target, model_name=a.model,
        model_version=None if model_version is None else str(model_version),
        launch=a.launch, ready_url=a.ready_url,
        ready_timeout_s=ready_timeout_s,
        metrics_url=a.metrics_url, scrape_metrics=not a.no_metrics,
        server_args=tuple(shlex.split(a.server_args or "")), cpus=cpus, encoding=encoding,
        compression=compression, level=a.level, pool_mb=pool_mb, signature_path=a.signature,
        data=a.data, group_by=a.group_by, rows=rows, selection=_data_options(a, load),
        profile=bool(a.profile or a.profiler_address), profiler_address=a.profiler_address,
        check_outputs=bool(a.check_outputs or a.expect_model), expect_model=bool(a.expect_model),
        rtol=_tolerance(a.rtol, "--rtol"), atol=_tolerance(a.atol, "--atol"),
        profile_groups=tuple(a.profile_group or ()),
        load=load, assertions=assertions,
        store=not a.no_store, runs_dir=runs_dir,
        db_path=Path(a.db) if a.db else runs_dir / "caliper.db", tags=tags,
        json_path=a.json, hlog_path=a.hlog, junit_path=a.junit, records_dir=a.records,
        quiet=bool(a.quiet))
