"""bench.denormals times the state it names: most of its nets' Adadelta averages denormal when the timing starts,
both optimizers measured, each ratio the quotient of its two rates; a share outside 0..1 refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import denormals


@pytest.mark.slow  # 800 warm steps into denormals (7 s)
def test_bench_denormals_times_nets_whose_averages_are_denormal(tmp_path: Path) -> None:
    argv = ["--batch-size", "16", "--warm", "800", "--steps", "5", "--rounds", "1", "--out", str(tmp_path)]
    assert denormals.main(argv) == 0
    (out,) = tmp_path.glob("denormals-*.json")
    result = json.loads(out.read_text())
    assert [row["kind"] for row in result["results"]] == ["single", "fused"]
    for row in result["results"]:
        assert row["denormal_share"] > 0.5  # the dead 70% of units' averages, and no more than every average
        assert row["denormal_share"] <= 0.71
        rate = row["steps_per_s"]
        assert row["flushed_over_ieee"] == pytest.approx(rate["flushed"] / rate["ieee"], abs=0.01)
    assert result["command"] == "python -m bench.denormals " + " ".join(argv)


def test_bench_denormals_refuses_a_dead_share_outside_0_to_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        denormals.main(["--dead", "1.5"])
    assert exit_.value.code == 2
    assert "--dead=1.5 is invalid: it must be a share from 0 to 1" in capsys.readouterr().err
