"""Terminal tables and the JSON document of profiles."""

from __future__ import annotations

import orjson

from modelcaliper.profile.base import MissingProfile, OpStat, ProfileResult, finish_result
from modelcaliper.profile.grouping import Grouper
from modelcaliper.profile.render import (
    display_name,
    profiles_document,
    render_missing,
    render_profile,
    render_profiles,
)


def _result(batch_size: int, loop_us: float, dense_us: float) -> ProfileResult:
    ops = (
        OpStat("StatefulPartitionedCall/transform/map/while", "While (untraced body)", 4,
               loop_us, loop_us, function="serve", traced=False, body_types=("Mul",)),
        OpStat("StatefulPartitionedCall/dense/MatMul", "MatMul", 4, dense_us, dense_us,
               input_shapes=(f"float[{batch_size},8]",)),
    )
    return finish_result(ProfileResult("tensorflow", ops, label=f"batch {batch_size}",
                                       batch_size=batch_size, predictions=4,
                                       wall_us=2 * (loop_us + dense_us), overhead_ratio=1.25,
                                       raw_path="/r", trace_path="/r/trace.json"), Grouper())


def test_render_profile() -> None:
    text = render_profile(_result(5, 300.0, 100.0))
    lines = text.splitlines()
    assert lines[0] == "tensorflow · batch 5 · 4 predictions"
    assert lines[1] == ("op self time 0.40 ms (all threads) · model calls 0.80 ms wall · "
                        "profiling overhead ×1.25")
    assert any(line.split()[:3] == ["transform", "0.30", "75.0%"] for line in lines)
    first_op = next(line for line in lines if line.startswith("1 "))
    assert "transform/map/while" in first_op and "75.0%" in first_op and "75.0" in first_op
    second_op = next(line for line in lines if line.startswith("2 "))
    assert "dense/MatMul" in second_op and "float[5,8]" in second_op
    assert "untraced rows:" in text and "files: /r  /r/trace.json" in text


def test_render_profiles_shows_scaling() -> None:
    text = render_profiles([_result(5, 300.0, 100.0), _result(25, 1500.0, 110.0)])
    table = text.split("scaling with batch size")[1].splitlines()
    assert "batch ×5 from 5 to 25" in table[0]
    loop = next(line for line in table if "map/while" in line)
    dense = next(line for line in table if "dense/MatMul" in line)
    # per prediction: 75 → 375 µs (×5.0, a cost per row); 25 → 27.5 µs (×1.1, per call)
    assert loop.split()[-3:] == ["75.0", "375.0", "×5.0"]
    assert dense.split()[-3:] == ["25.0", "27.5", "×1.1"]


def test_display_name_strips_wrappers_and_cuts_from_the_left() -> None:
    op = OpStat("StatefulPartitionedCall/" + "/".join(["scope"] * 20) + "/MatMul", "MatMul", 1,
                1.0, 1.0)
    shown = display_name(op, 30)
    assert len(shown) == 30 and shown.startswith("…") and shown.endswith("scope/MatMul")
    assert display_name(OpStat("StatefulPartitionedCall/a/b", "X", 1, 1, 1)) == "a/b"


def test_documents() -> None:
    document = profiles_document([_result(5, 3.0, 1.0), MissingProfile("no service")],
                                 model="m", top_n=1)
    text = orjson.loads(orjson.dumps(document))
    assert text["model"] == "m" and len(text["profiles"]) == 2
    assert text["profiles"][0]["summary"]["top"] == ["StatefulPartitionedCall/transform/map/while"]
    assert text["profiles"][1] == {"format": "modelcaliper.profile/1", "status": "missing",
                                   "reason": "no service", "raw_path": None}
    assert render_missing(MissingProfile("no service")) == "profile: missing: no service\n"
