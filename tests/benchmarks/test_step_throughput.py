"""The throughput benchmark runs end to end and its theoretical floors are the issue's."""

import json

import pytest

from conftest import run_module

from benchmarks import step_throughput


def test_floor_ratios():
    assert step_throughput.floor_ratio("mocov2", "mixmask") == 1.75
    assert step_throughput.floor_ratio("mocov2", "none") == 1.0
    assert step_throughput.floor_ratio("simclr", "mixmask") == 1.5
    assert step_throughput.floor_ratio("byol", "mixmask") == 11 / 8
    assert step_throughput.floor_ratio("mocov2", "mixmask_unmix") == 10 / 4


@pytest.mark.slow
def test_benchmark_prints_table_and_writes_json(tmp_path):
    path = str(tmp_path / "rows.json")
    result = run_module("benchmarks.step_throughput", "--frameworks=mocov2", "--branches=none,mixmask", "--small_image_shape=28,28,1",
                        "--width=4", "--batch_size=16", "--queue_size=64", "--steps=2", "--warmup=1",
                        "--augment_on=host,device", f"--json={path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ms/step" in result.stdout and "mask+mix" in result.stdout and "+augment" in result.stdout
    all_rows = json.load(open(path))["rows"]
    device = [r for r in all_rows if r["augment_on"] == "device"]
    assert [(r["branch"], r["augment"]) for r in device] == [("none", "fashion_mnist"), ("mixmask", "fashion_mnist")]
    for row in device:  # the difference to the row given finished views
        host = next(r for r in all_rows if r["augment_on"] == "host" and r["branch"] == row["branch"])
        assert abs(row["augment_ms"] - (row["ms_per_step"] - host["ms_per_step"])) < 1e-9
    rows = [r for r in all_rows if r["augment_on"] == "host"]
    assert [(r["framework"], r["branch"]) for r in rows] == [("mocov2", "none"), ("mocov2", "mixmask")]
    assert all(r["ms_per_step"] > 0 and r["images_per_second"] > 0 for r in rows)
    assert rows[0]["ratio_to_plain"] == 1.0 and rows[1]["floor_ratio"] == 1.75
    assert 0 < rows[1]["branch_ops_share"] < 1
    # The input-pipeline benchmark compares its rate per preset with those step rows.
    out = str(tmp_path / "pipeline.json")
    result = run_module("benchmarks.input_pipeline", "--augments=fashion_mnist,byol", "--batch_size=32",
                        "--batches=2", "--warmup=1", f"--step_json={path}", f"--json={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    pipeline = json.load(open(out))
    assert sorted(pipeline["images_per_second"]) == ["byol", "fashion_mnist"]
    assert pipeline["mode"] == "vectorized"
    for mode in ("vectorized", "per_example"):
        assert all(rate > 0 for rate in pipeline["images_per_second_per_mode"][mode].values())
    assert len(pipeline["comparisons"]) == 4 and all(c["pipeline_over_step"] > 0 for c in pipeline["comparisons"])


def test_finish_stage_benchmark_times_the_three_ways():
    result = run_module("benchmarks.finish_stage", "--augment=byol", "--image_size=20", "--batch_size=4",
                        "--repeats=1")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "byol, 4 images x 2 views of 20 px"
    assert [line.split()[0] for line in lines[1:]] == ["host", "dense", "xla"]
    assert all(float(line.split()[1]) > 0 for line in lines[1:])
