"""Many models end to end on the embedded default: one model per store and product.

The synthetic sales dataset (src/sales_forecast) at a small scale, trained on
joblib's local processes: a set is registered as one version, an unchanged
re-run registers nothing, each partition is gated against its own champion,
invalid partitions keep theirs, the set's rule decides the alias, and batch
scoring uses each partition's model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sales_forecast.generate import write
from sales_forecast.spec import SPEC
from tests.conftest import Cli

STORES, PRODUCTS, WEEKS = 4, 3, 60


@pytest.fixture
def sales(workdir, monkeypatch) -> Path:
    """``workdir`` with MLOPS_MODEL=sales and a 4 x 3 partition dataset in data/sales."""
    monkeypatch.setenv("MLOPS_MODEL", "sales")
    monkeypatch.delenv("MLOPS_DATA_PATH")
    monkeypatch.setenv("MLOPS_MANY_JOBS", "2")
    write(workdir / "data" / "sales", STORES, PRODUCTS, WEEKS)
    return workdir


def config(directory: Path, name: str, **changes) -> Path:
    """The sales config with ``model`` params and ``partitions`` rules changed."""
    raw = yaml.safe_load(SPEC.config_path.read_text())
    raw["model"].update(changes.pop("model", {}))
    raw["partitions"].update(changes)
    path = directory / name
    path.write_text(yaml.safe_dump(raw))
    return path


def run(directory: Path, *args: str) -> dict:
    result, summary = Cli(directory).run(*args)
    assert result.exit_code == 0, result.output
    assert summary is not None
    return summary


def index(directory: Path, version: int, **settings) -> pd.DataFrame:
    """The index of registered version ``version``, by partition key."""
    from ml_service.registry.signed import download_set
    from ml_service.registry import connect
    from tests.conftest import model_settings

    models = download_set(connect(model_settings(SPEC, **settings)), version,
                          directory / f"v{version}")
    models.close()
    return models.index


def edit_partition(directory: Path, store: int, product: int, column: str, value) -> None:
    path = directory / "data" / "sales" / f"store={store}" / "part-0.parquet"
    frame = pd.read_parquet(path)
    rows = frame["product"] == product
    frame.loc[rows, column] = value(frame.loc[rows, column]) if callable(value) else value
    frame.to_parquet(path, index=False)


def test_a_set_is_one_version_and_an_unchanged_rerun_registers_nothing(sales):
    first = run(sales)
    partitions = STORES * PRODUCTS
    assert first["registered"] and first["version"] == 1 and first["champion"]
    assert first["counts"] == {"new": partitions} and first["partitions"] == partitions
    assert first["rule"].startswith(f"passed: {partitions}/{partitions} partitions")
    assert first["engine"] == "joblib" and first["validation"] == []
    entries = index(sales, 1)
    assert sorted(entries.index) == sorted(f"store={s}/product={p}" for s in range(1, STORES + 1)
                                           for p in range(1, PRODUCTS + 1))
    assert set(entries["decision"]) == {"new"} and set(entries["source_version"]) == {0}
    assert (entries["metric.wape"] < 0.25).all() and (entries["rows"] == WEEKS).all()

    again = run(sales)
    assert not again["registered"] and again["version"] is None
    assert again["counts"] == {"unchanged": partitions}
    assert "nothing new to register" in again["reason"]

    # One partition's data changes: only it is retrained; a better model is promoted.
    edit_partition(sales, 2, 3, "sales", lambda s: s * 1.3)
    third = run(sales)
    assert third["counts"] == {"unchanged": partitions - 1, "promoted": 1}, third
    assert third["registered"] and third["version"] == 2 and third["champion"]
    entries = index(sales, 2)
    assert entries.at["store=2/product=3", "decision"] == "promoted"
    assert entries.at["store=2/product=3", "source_version"] == 0  # this version's own
    assert entries.at["store=1/product=1", "source_version"] == 1  # carried over from v1


def test_each_partition_is_gated_against_its_own_champion(sales):
    weak = config(sales, "weak.yaml", model={"alpha": 200.0})
    first = run(sales, "--config", str(weak))
    assert first["counts"] == {"new": STORES * PRODUCTS}, first
    better = run(sales)  # alpha 1: better on every partition's holdout
    assert better["counts"] == {"promoted": STORES * PRODUCTS}
    assert better["version"] == 2 and better["champion"]
    worse = run(sales, "--config", str(weak))  # same data, but the params changed again
    assert worse["counts"] == {"kept": STORES * PRODUCTS}
    assert not worse["registered"] and worse["previous_version"] == 2
    assert worse["problems"] == []  # kept is not a problem: the partitions keep v2's models


def test_an_invalid_partition_keeps_its_champion_and_the_rule_holds_the_alias(sales):
    run(sales)
    edit_partition(sales, 3, 1, "price", -5.0)  # breaks the contract (price >= 0.01)
    edit_partition(sales, 1, 2, "sales", lambda s: s * 1.3)  # a real change elsewhere
    result = run(sales)
    assert result["counts"] == {"unchanged": 10, "invalid": 1, "promoted": 1}, result
    assert any(p.startswith("store=3/product=1: invalid: price: 60 values outside")
               for p in result["problems"])
    assert result["validation"] and "store=3" in result["validation"][0]
    # 1 invalid of 12 is more than the 2% the example's rule allows: registered, not champion.
    assert result["registered"] and result["version"] == 2 and not result["champion"]
    assert result["rule"].startswith("failed:")
    entries = index(sales, 2)
    assert entries.at["store=3/product=1", "decision"] == "invalid"
    assert entries.at["store=3/product=1", "source_version"] == 1
    from ml_service.registry import connect
    from tests.conftest import model_settings

    assert connect(model_settings(SPEC)).alias_version("champion") == 1

    lenient = config(sales, "lenient.yaml", max_invalid_fraction=0.1)
    edit_partition(sales, 1, 3, "sales", lambda s: s * 1.3)
    result = run(sales, "--config", str(lenient))
    assert result["champion"] and result["rule"].startswith("passed:"), result


def test_batch_scoring_uses_each_partitions_model_and_names_the_ones_without(sales):
    run(sales)
    write(sales / "score", STORES + 1, PRODUCTS, 10, seed=7)  # store 5 has no models
    out = sales / "predictions"
    result = Cli(sales)("batch-score", "--data", str(sales / "score"), "--out", str(out),
                        "--json-out", str(sales / "score.json"))
    assert result.exit_code == 0, result.output
    summary = json.loads((sales / "score.json").read_text())
    assert summary["rows"] == STORES * PRODUCTS * 10 and summary["partitions"] == STORES * PRODUCTS
    assert summary["unscored_rows"] == PRODUCTS * 10
    assert summary["missing"] == [f"store=5/product={p}" for p in range(1, PRODUCTS + 1)]
    assert "30 rows not scored" in result.output

    from ml_service.registry.signed import download_set
    from ml_service.registry import connect
    from tests.conftest import model_settings

    models = download_set(connect(model_settings(SPEC)), 1, sales / "set")
    scored = pd.read_parquet(out / "store=2")
    assert list(scored.columns) == ["product", "week", "sales", "prediction", "model_version"]
    assert (scored["model_version"] == 1).all() and len(scored) == PRODUCTS * 10
    inputs = pd.read_parquet(sales / "score" / "store=2")
    rows = inputs["product"] == 2
    expected = models.load("store=2/product=2").predict(
        inputs.loc[rows, ["price", "promotion", "temperature"]].to_numpy(dtype=float))
    assert np.allclose(scored.loc[scored["product"] == 2, "prediction"], expected)
    assert not (out / "store=5").exists() or pd.read_parquet(out / "store=5").empty


def test_mistakes_are_clear_usage_errors(sales):
    cli = Cli(sales)
    result = cli("run", "--data", str(sales / "nowhere"))
    assert result.exit_code == 2 and "no dataset at" in result.output
    (sales / "flat").mkdir()
    (sales / "flat" / "x.parquet").write_bytes(b"")
    result = cli("run", "--data", str(sales / "flat"))
    assert result.exit_code == 2 and "holds no 'store=<value>' directories" in result.output
    result = cli("run", "--dry-run")
    assert result.exit_code == 2 and "many-models set" in result.output
    result = cli("batch-score")
    assert result.exit_code == 2 and "no version has alias 'champion'" in result.output


def test_mlops_data_writes_the_example_set_that_trains(sales):
    import shutil

    shutil.rmtree(sales / "data" / "sales")
    result = Cli(sales)("data")
    assert result.exit_code == 0 and "5 shards by store" in result.output, result.output
    assert sorted(p.name for p in (sales / "data" / "sales").iterdir()) == [
        f"store={s}" for s in range(1, 6)]
    summary = run(sales)
    assert summary["counts"] == {"new": 20} and summary["champion"]


def test_status_summarises_each_set(sales):
    run(sales)
    edit_partition(sales, 3, 1, "price", -5.0)
    edit_partition(sales, 1, 2, "sales", lambda s: s * 1.3)
    run(sales)
    result = Cli(sales)("status", "--json-out", str(sales / "status.json"))
    assert result.exit_code == 0, result.output
    assert "sales-forecast (many models)" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith(("│ 1 ", "│ 2 "))]
    assert len(lines) == 2, result.output
    first, second = (line.replace("│", " ").split() for line in sorted(lines))
    assert first[:4] == ["1", "champion", "12", "0"] and first[-1] == "passed"
    assert second[:7] == ["2", "12", "1", "0", "0", "10", "1"] and second[-1] == "failed"
    versions = json.loads((sales / "status.json").read_text())["versions"]
    assert {v["version"]: v["tags"]["set.partitions"] for v in versions} == {1: "12", 2: "12"}


def test_the_make_targets_train_rerun_and_batch_score(tmp_path):
    from tests.conftest import isolated_env
    from tests.integration.test_make import make

    env = {**isolated_env(tmp_path), "MANY_DATA": str(tmp_path / "sales"), "MLOPS_MANY_JOBS": "2",
           "PREDICTIONS": str(tmp_path / "predictions")}
    env.pop("MLOPS_MODEL", None)
    first = make("train-many", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "wrote " in first.stdout and "registered version 1 with 20 models" in first.stdout
    summary = json.loads((tmp_path / "reports" / "train-many.json").read_text())
    assert summary["counts"] == {"new": 20} and summary["champion"]
    again = make("train-many", env=env)
    assert again.returncode == 0 and "nothing new to register" in again.stdout, again.stdout
    scored = make("batch-score", env=env)
    assert scored.returncode == 0, scored.stdout + scored.stderr
    assert "scored 2080 rows of 20 partitions with version 1" in scored.stdout
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == [
        f"store={s}" for s in range(1, 6)]
    small = make("data-many", "MANY_SCALE=--stores 2 --products 3 --rows 30", env=env)
    assert small.returncode == 0 and "wrote 6 partitions x 30 rows" in small.stdout, small.stderr


def test_a_set_has_a_model_card_with_the_spread_of_its_metrics(sales):
    from fastapi.testclient import TestClient

    from ml_service.serving import create_app
    from ml_service.settings import Settings

    run(sales)
    cli = Cli(sales)
    result = cli("card", "--version", "1", "--json-out", str(sales / "card.json"))
    assert result.exit_code == 0, result.output
    card = json.loads((sales / "card.json").read_text())
    assert card["kind"] == "model-set" and card["model"]["version"] == 1
    assert card["model"]["partition_keys"] == ["store", "product"]
    assert card["gate"]["counts"] == {"new": STORES * PRODUCTS} and card["gate"]["champion"]
    wape = card["evaluation"]["metrics"]["wape"]
    entries = index(sales, 1)
    assert wape["worst"] == pytest.approx(entries["metric.wape"].max())
    assert wape["median"] == pytest.approx(entries["metric.wape"].median())
    assert card["data"] == {"partitions": 12, "models": 12, "rows": 12 * WEEKS,
                            "contract": SPEC.contract.name}
    assert "(many models)" in result.stdout and "| wape |" in result.stdout

    assert cli("bundle", "--version", "1", "--out", str(sales / "b")).exit_code == 0
    with TestClient(create_app(Settings(bundle_dir=sales / "b"))) as client:
        served = client.get("/model-card")
    assert served.status_code == 200 and served.json() == card
