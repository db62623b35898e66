"""The many-models runner on a real Ray cluster, against joblib's result on the same data.

A local cluster is started with `ray start --head` and the client connects by
address (RAY_ADDRESS), as it would to a remote one. Skips with the reason
without Ray, unless REQUIRE_RAY=1 (as in .ci/run).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sales_forecast.generate import write
from tests.conftest import Cli
from tests.integration.test_many_models import index
from tests.servers import RayCluster


def read(directory) -> pd.DataFrame:
    """A predictions dataset as one frame (the store from the directory names)."""
    frame = pd.read_parquet(directory)
    return frame.astype({"store": int})


@pytest.fixture
def ray_cluster():
    with RayCluster() as cluster:
        yield cluster


def test_a_set_trained_on_ray_equals_the_joblib_set(workdir, monkeypatch, ray_cluster,
                                                    tmp_path_factory):
    monkeypatch.setenv("MLOPS_MODEL", "sales")
    monkeypatch.delenv("MLOPS_DATA_PATH")
    write(workdir / "data" / "sales", 3, 4, 60)
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
    cli = Cli(workdir)
    result, on_ray = cli.run()
    assert result.exit_code == 0, result.output
    assert on_ray["engine"] == "ray" and on_ray["counts"] == {"new": 12}
    assert "on ray (2 workers)" in result.output
    again, cached = cli.run()
    assert cached["counts"] == {"unchanged": 12} and not cached["registered"]

    scored = cli("batch-score", "--out", str(workdir / "predictions"),
                 "--json-out", str(workdir / "score.json"))
    assert scored.exit_code == 0, scored.output
    assert json.loads((workdir / "score.json").read_text())["engine"] == "ray"
    ray_predictions = read(workdir / "predictions")
    ray_index = index(workdir, 1)

    # The same data and config on joblib, as a registered model of its own.
    other = tmp_path_factory.mktemp("joblib")
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setenv("MLOPS_MODEL_NAME", "sales-on-joblib")
    result, on_joblib = cli.run()
    assert on_joblib["engine"] == "joblib" and on_joblib["counts"] == on_ray["counts"]
    joblib_index = index(other, 1, model_name="sales-on-joblib")
    columns = [c for c in ray_index.columns if c.startswith("metric.")] + ["rows", "cache_key"]
    pd.testing.assert_frame_equal(ray_index[columns].sort_index(),
                                  joblib_index[columns].sort_index())
    assert cli("batch-score", "--out", str(other / "predictions")).exit_code == 0
    joblib_predictions = read(other / "predictions")
    key = ["store", "product", "week"]
    pd.testing.assert_frame_equal(ray_predictions.sort_values(key).reset_index(drop=True),
                                  joblib_predictions.sort_values(key).reset_index(drop=True))


def test_a_driver_off_the_cluster_connects_through_the_ray_client(workdir, monkeypatch,
                                                                  ray_cluster):
    """A GitHub runner reaches a remote cluster as ray://host:10001 (Ray Client)."""
    monkeypatch.setenv("MLOPS_MODEL", "sales")
    monkeypatch.delenv("MLOPS_DATA_PATH")
    write(workdir / "data" / "sales", 2, 2, 40)
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.client_address)
    result, summary = Cli(workdir).run()
    assert result.exit_code == 0, result.output + ray_cluster.client_logs()
    assert summary["engine"] == "ray" and summary["counts"] == {"new": 4}


def test_a_ray_address_that_answers_nothing_is_a_clear_error(workdir, monkeypatch):
    from tests.servers import free_port

    monkeypatch.setenv("MLOPS_MODEL", "sales")
    monkeypatch.delenv("MLOPS_DATA_PATH")
    write(workdir / "data" / "sales", 1, 1, 30)
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    result = Cli(workdir)("run")
    assert result.exit_code == 2, result.output
    assert "cannot connect to the Ray cluster at 127.0.0.1:" in result.output
