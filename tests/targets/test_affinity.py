"""CPU pinning: CPU lists, the default split, flags, and pinning this process's threads."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from modelcaliper.errors import UsageError
from modelcaliper.targets.affinity import (
    CpuPlan,
    available_cpus,
    cpus_of,
    format_cpu_list,
    launch_prefix,
    parse_cpu_list,
    pin_current_process,
    plan_cpus,
)

CPU_LISTS = [
    ("0", (0,)),  # one CPU
    ("0-3", (0, 1, 2, 3)),  # a range
    ("0-2,5", (0, 1, 2, 5)),  # range and single
    (" 3, 1 ,1", (1, 3)),  # spaces, order and duplicates do not matter
    ("4-4", (4,)),  # a one-CPU range
]


@pytest.mark.parametrize(("text", "expected"), CPU_LISTS)
def test_parse_cpu_list(text, expected):
    assert parse_cpu_list(text) == expected


@pytest.mark.parametrize("text", [
    "",  # nothing
    "a",  # not a number
    "3-1",  # backwards range
    "-1",  # negative
    "0-",  # open range
])
def test_parse_cpu_list_refuses_with_the_flag_named(text):
    with pytest.raises(UsageError, match="--client-cpus"):
        parse_cpu_list(text, "--client-cpus")


@pytest.mark.parametrize(("cpus", "text"), [
    ((0,), "0"),  # one
    ((0, 1, 2, 5), "0-2,5"),  # a run and a single
    ((7, 1, 2, 3), "1-3,7"),  # unsorted input
    ((), ""),  # none
])
def test_format_cpu_list(cpus, text):
    assert format_cpu_list(cpus) == text
    if cpus:
        assert parse_cpu_list(text) == tuple(sorted(cpus))


PLANS = [
    # 2 CPUs: server on the last, generator on the first
    (dict(available=[0, 1]), (1,), (0,)),
    # 8 CPUs: server on the last half
    (dict(available=range(8)), (4, 5, 6, 7), (0, 1, 2, 3)),
    # 3 CPUs: server gets one (half rounded down), generator two
    (dict(available=[0, 1, 2]), (2,), (0, 1)),
    # one CPU: nothing pinned
    (dict(available=[0]), (), ()),
    # --server-cpus only: the generator gets the rest
    (dict(server_cpus="0", available=[0, 1, 2]), (0,), (1, 2)),
    # --client-cpus only: the server gets the rest
    (dict(client_cpus="2", available=[0, 1, 2]), (0, 1), (2,)),
    # both given, as the example
    (dict(server_cpus="1", client_cpus="0", available=[0, 1]), (1,), (0,)),
    # --no-pin
    (dict(pin=False, available=[0, 1]), (), ()),
]


@pytest.mark.parametrize(("kwargs", "server", "client"), PLANS)
def test_plan_cpus(kwargs, server, client):
    plan = plan_cpus(**kwargs)
    assert (plan.server_cpus, plan.client_cpus) == (server, client)
    assert plan.pinned == bool(server or client)
    assert plan.note


def test_plan_notes_overlap_and_records_what_was_applied():
    plan = plan_cpus("0-1", "1", available=[0, 1])
    assert "CPU 1 shared" in plan.note
    assert plan.to_dict() == {"server_cpus": "0-1", "client_cpus": "1", "note": plan.note}
    assert CpuPlan().to_dict() == {"server_cpus": None, "client_cpus": None,
                                   "note": "not pinned"}


@pytest.mark.parametrize(("kwargs", "message"), [
    # a CPU this process may not use
    (dict(server_cpus="5", available=[0, 1]), r"--server-cpus names CPU 5.*available: 0-1"),
    # the server takes every CPU and nothing is left for the generator
    (dict(server_cpus="0-1", available=[0, 1]), "takes every available CPU"),
    # the generator takes every CPU
    (dict(client_cpus="0,1", available=[0, 1]), "leave one for the server"),
    # a flag together with --no-pin
    (dict(server_cpus="1", pin=False), "cannot be combined with --no-pin"),
])
def test_plan_cpus_refuses(kwargs, message):
    with pytest.raises(UsageError, match=message):
        plan_cpus(**kwargs)


def test_pin_current_process_pins_running_threads_and_restores():
    cpus = available_cpus()
    release = threading.Event()
    seen: dict[str, int] = {}

    def worker() -> None:
        seen["tid"] = threading.get_native_id()
        release.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        while "tid" not in seen:
            pass
        previous = pin_current_process(cpus[:1])
        assert previous == cpus
        assert os.sched_getaffinity(0) == {cpus[0]}
        # A thread that was already running is pinned too.
        assert os.sched_getaffinity(seen["tid"]) == {cpus[0]}
        pin_current_process(previous)
        assert os.sched_getaffinity(0) == set(cpus)
        assert os.sched_getaffinity(seen["tid"]) == set(cpus)
    finally:
        release.set()
        thread.join()
        pin_current_process(cpus)


def test_launch_prefix_pins_the_command_before_it_runs():
    cpu = available_cpus()[-1]
    out = subprocess.run(
        [*launch_prefix([cpu]), "sh", "-c", "grep Cpus_allowed_list /proc/self/status"],
        capture_output=True, text=True, check=True).stdout
    assert out.split(":")[1].strip() == str(cpu)
    assert cpus_of(os.getpid()) == available_cpus()


def test_launch_prefix_reports_a_command_that_cannot_run():
    done = subprocess.run([*launch_prefix(), "/nonexistent/server"], capture_output=True,
                          text=True)
    assert done.returncode == 127
    assert done.stderr.strip() == ("error: cannot run '/nonexistent/server': "
                                   "No such file or directory")


def test_the_parent_death_signal_is_asked_for_from_the_main_thread_only():
    # argv: python -c LAUNCHER cpus parent -- ...; parent 0 means "do not ask".
    assert launch_prefix()[4] == str(os.getpid())
    assert launch_prefix(die_with_parent=False)[4] == "0"
    seen: list[str] = []
    thread = threading.Thread(target=lambda: seen.append(launch_prefix()[4]))
    thread.start()
    thread.join()
    assert seen == ["0"]
