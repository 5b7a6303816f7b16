"""The demo ranking model, profiled: v1's costly transform is the top op group, v2's is not."""

from __future__ import annotations

import pytest

from modelcaliper.profile.base import ProfileResult
from modelcaliper.profile.isolated import IsolatedSettings, profile_isolated

pytestmark = pytest.mark.slow
pytest.importorskip("tensorflow")
demo_data = pytest.importorskip("modelcaliper.demo.data")
demo_model = pytest.importorskip("modelcaliper.demo.model")

SETTINGS = IsolatedSettings(batch_sizes=(25,), predictions=60, warmup=100)


@pytest.fixture(scope="module")
def demo_profiles(tmp_path_factory: pytest.TempPathFactory) -> dict[int, ProfileResult]:
    """Both demo versions at their real sizes, trained briefly, profiled at batch 25."""
    from modelcaliper.server.runtimes import read_signature
    from modelcaliper.workload import map_inputs, read_columns

    out = tmp_path_factory.mktemp("demo-profile")
    layout = demo_data.FeatureLayout()  # the demo's real widths, on little data
    data = demo_data.write_dataset(out / "train.parquet", layout, queries=4, candidates=250,
                                   seed=3)
    # the demo's own network (TrainConfig's defaults): the group shares depend on its size
    built = demo_model.build_models(out, data.path, layout, demo_model.TrainConfig(epochs=1))
    profiles = {}
    for number, version in enumerate(built.versions, start=1):
        inputs = map_inputs(read_columns(data.path, limit=200), read_signature(version)).tensors
        (profiles[number],) = profile_isolated(version, inputs, out / f"profile-{number}",
                                               SETTINGS)
    return profiles


def _loops(result: ProfileResult) -> list[str]:
    return [op.name for op in result.ops if op.name.endswith("map/while")]


def test_v1_transform_leads(demo_profiles: dict[int, ProfileResult]) -> None:
    v1 = demo_profiles[1]
    assert v1.summary().top_group == "transform"
    # well ahead of the demo's real network (the share depends on the machine's load)
    assert v1.summary().share_of("transform") > 0.6
    assert v1.ops[0].group == "transform", v1.ops[0]
    # v1's two slow parts lead: the tf.map_fn that cleans each candidate's strings one at a
    # time, and the per-column op chain (untraced ops of the transform signature)
    assert {op.name.split("/")[-1] for op in v1.ops[:2]} == {
        "while", "(untraced ops and executor)"}, [op.name for op in v1.ops[:3]]


def test_v2_model_leads(demo_profiles: dict[int, ProfileResult]) -> None:
    v2 = demo_profiles[2]
    summary = v2.summary()
    assert summary.top_group == "model", (summary.share_of("transform"), v2.ops[:5])
    assert summary.share_of("model") > summary.share_of("transform")
    print(f"v2 group shares: model {summary.share_of('model'):.1%}, "
          f"transform {summary.share_of('transform'):.1%}")


def test_v2_has_no_costly_transform_op(demo_profiles: dict[int, ProfileResult]) -> None:
    v1, v2 = demo_profiles[1], demo_profiles[2]
    assert _loops(v1) and not _loops(v2)
    assert not v2.ops[0].name.endswith("map/while")
    per_prediction = {n: sum(op.self_us for op in r.ops if op.group == "transform")
                      / (r.predictions or 1) for n, r in demo_profiles.items()}
    assert per_prediction[2] * 5 < per_prediction[1], per_prediction
    assert v2.summary().share_of("transform") < v1.summary().share_of("transform")
