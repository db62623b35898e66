"""Signed models: the two attacks of the security review, replayed against signatures.

1. A many-models set whose ``models.zip`` entries are swapped for pickles that
   run a command, with every hash in its index and metadata recomputed (what
   anyone who can write the registry's artifacts can do). Batch scoring,
   bundling (for `make serve` and the image), drift and the next training run
   (which would copy kept partitions) all refuse it before unpickling
   anything, and the command never runs.
2. A bundle whose ``model.onnx`` is swapped for another valid graph, with
   ``runtime.sha256`` in ``metadata.json`` rewritten to match, even with
   ``MLOPS_MODEL_SHA256`` pinned: the service refuses to start.

Plus a set registered before signing (refused, then signed by `mlops sign`
after the old checks), and bundles signed by a key the repository does not
trust.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from ml_service.bundle import METADATA_FILE, ONNX_FILE
from ml_service.serving import create_app
from ml_service.settings import Settings
from ml_service.signing import SignatureError
from sales_forecast.spec import SPEC as SALES
from tests.conftest import DATA, fit, model_settings, sign, write_bundle
from tests.integration.test_many_models import run, sales  # noqa: F401 - fixture
from tests.integration.test_model_safety import Payload


def run_folder(settings: Settings, version: int, artifact: str) -> Path:
    """Where the embedded store keeps ``artifact`` of version ``version``'s run."""
    uri = settings.resolved_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = client.get_model_version(settings.model_name, str(version)).run_id
    return Path(urlsplit(client.get_run(run_id).info.artifact_uri).path) / artifact


def make_hostile(set_dir: Path, marker: Path) -> int:
    """Swap every entry of the set in ``set_dir`` for a command; recompute every hash."""
    from ml_service.sets import METADATA, Entry, ModelSet, write_set

    models = ModelSet(set_dir)
    entries = []
    for key in models.keys:
        row = models.row(key)
        entries.append(Entry(key, row["decision"], row["reason"], int(row["source_version"]),
                             int(row["rows"]), row["cache_key"], models.metrics(key),
                             pickle.dumps(Payload(marker))))
    models.close()
    metadata = json.loads((set_dir / METADATA).read_text())
    rebuilt = set_dir.parent / "rebuilt"
    write_set(rebuilt, entries, metadata)
    for path in rebuilt.iterdir():
        shutil.copy2(path, set_dir / path.name)
    ModelSet(set_dir).close()  # every hash of the old checks agrees with the swapped entries
    return len(entries)


def scoring_log(directory: Path, frame: pd.DataFrame, version: int) -> Path:
    """A scoring log of ``frame``'s rows as served by ``version`` (what drift reads)."""
    directory.mkdir()
    lines = [{"request_id": f"r{i}", "row": 0, "timestamp": "t", "model_name": "m",
              "model_version": version, "source_version": version, **row, "prediction": 1.0}
             for i, row in enumerate(frame.to_dict("records"))]
    pd.DataFrame(lines).to_json(directory / "scoring-x.jsonl", orient="records", lines=True)
    return directory


def test_a_hostile_set_with_recomputed_hashes_is_refused_everywhere(sales):  # noqa: F811
    from ml_service.many.dataset import read_dataset
    from tests.conftest import Cli

    run(sales)
    marker = sales / "pwned"
    settings = model_settings(SALES)
    assert make_hostile(run_folder(settings, 1, "set"), marker) == 12
    training = read_dataset(str(sales / "data" / "sales"), ["store", "product"])
    logs = scoring_log(sales / "logs", training.drop(columns="sales").head(300), 1)
    cli = Cli(sales)
    loaders = {
        "batch-score": cli("batch-score", "--out", str(sales / "predictions")),
        "bundle (make serve, the image)": cli("bundle", "--out", str(sales / "bundle")),
        "drift": cli("drift", "--logs", str(logs)),
        "train-many (kept partitions)": cli("run"),
    }
    for name, result in loaders.items():
        assert result.exit_code == 2, (name, result.output)
        assert "sales-forecast version 1 does not match its signature: Hash mismatch for " \
            "'index.json'" in result.stderr, (name, result.stderr)
    assert not marker.exists(), "a hostile set ran code"
    assert not (sales / "bundle").exists() and not (sales / "predictions").exists()


def test_a_set_from_before_signing_is_refused_and_cannot_be_signed_afterwards(sales):  # noqa: F811,E501
    """A set's entries are pickles only the registry's own hashes vouch for: no migration."""
    from tests.conftest import Cli

    run(sales)
    settings = model_settings(SALES)
    shutil.rmtree(run_folder(settings, 1, "signature"))
    cli = Cli(sales)
    result = cli("bundle", "--out", str(sales / "bundle"))
    assert result.exit_code == 2 and "sales-forecast version 1 is not signed" in result.stderr
    refused = cli("sign", "--version", "1")
    assert refused.exit_code == 1, refused.output
    assert "is a many-models set: its entries are pickles" in refused.stderr
    assert cli("verify", "--version", "1").exit_code == 2


def test_registration_refuses_to_vouch_for_files_swapped_in_the_registry(
        cli, workdir, monkeypatch):
    """The files signed are the ones written here; a registry copy changed on the way fails.

    A registry writer swaps the uploaded model between its upload and the
    signature (here: as the card is logged); the signature covers what the
    pipeline wrote, so the registry's copy does not verify and nothing is vouched for.
    """
    from ml_service.training import tracking

    original = tracking.log_card
    settings = model_settings()

    def swap_then_log(card, directory):
        model = next(run_folder(settings, 1, "model").glob("model.skops"))
        model.write_bytes(model.read_bytes() + b"appended by a registry writer")
        return original(card, directory)

    monkeypatch.setattr(tracking, "log_card", swap_then_log)
    result, _ = cli.run()
    assert result.exit_code == 1, result.output
    assert "the registry does not hold the files that were signed" in result.stderr
    assert "Hash mismatch for 'model.skops'" in result.stderr
    monkeypatch.setattr(tracking, "log_card", original)
    refused = cli("bundle", "--out", str(workdir / "b"))
    assert refused.exit_code == 2 and "does not match its signature" in refused.stderr


@pytest.fixture
def onnx_bundle(tmp_path) -> Path:
    """A signed ONNX bundle of the diabetes model (as `mlops bundle` writes one)."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    return write_bundle(bundle, fit(pd.read_csv(DATA), {"alpha": 1.0}))


def swap_onnx(bundle: Path) -> None:
    """Replace the graph with another valid one and make metadata.json agree."""
    from diabetes_regression.spec import SPEC
    from ml_service.bundle import sha256_file
    from ml_service.registry.compiled import compile_model

    other = fit(pd.read_csv(DATA), {"alpha": 1e6})
    payload, _ = compile_model(other, SPEC.output, np.asarray(SPEC.example, float), "example")
    (bundle / ONNX_FILE).write_bytes(payload)
    metadata = json.loads((bundle / METADATA_FILE).read_text())
    metadata["runtime"]["sha256"] = sha256_file(bundle / ONNX_FILE)
    (bundle / METADATA_FILE).write_text(json.dumps(metadata))


def test_a_swapped_onnx_graph_with_rewritten_metadata_is_never_served(onnx_bundle, tmp_path):
    pinned = json.loads((onnx_bundle / METADATA_FILE).read_text())["sha256"]
    swap_onnx(onnx_bundle)
    with pytest.raises(SignatureError, match="Hash mismatch for 'metadata.json'; Hash mismatch "
                                             "for 'model.onnx'"):
        create_app(Settings(bundle_dir=onnx_bundle, model_sha256=pinned, scoring_log_dir=None))
    # The service's own command: one line, exit code 3, nothing listening.
    env = {**os.environ, "MLOPS_BUNDLE_DIR": str(onnx_bundle), "MLOPS_MODEL_SHA256": pinned,
           "MLOPS_SERVE_PORT": "1", "MLOPS_SCORING_LOG_DIR": ""}
    started = subprocess.run([sys.executable, "-m", "ml_service.serving"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 3, started.stderr
    assert "cannot start: the bundle in" in started.stderr
    assert "does not match its signature" in started.stderr


@pytest.mark.parametrize("change", ["unsigned", "another key", "signature removed after"])
def test_a_bundle_not_signed_by_a_trusted_key_is_refused(onnx_bundle, tmp_path, change):
    from ml_service import signing

    if change == "unsigned":
        (onnx_bundle / signing.SIGNATURE_FILE).unlink()
        message = r"is not signed \(no model.sig\)"
    elif change == "another key":
        key = tmp_path / "other.pem"
        signing.write_private(key, signing.new_key_pair()[0])
        signing.Signer(None, key).sign(onnx_bundle)
        message = "which the repository does not trust"
    else:
        (onnx_bundle / "extra.txt").write_text("added after signing")
        message = "Extra files found"
    with pytest.raises(SignatureError, match=message):
        create_app(Settings(bundle_dir=onnx_bundle, scoring_log_dir=None))


def test_a_re_signed_swap_is_still_caught_by_the_hashes(onnx_bundle):
    """Behind the signature the hash checks stay (a pipeline that signed a bad bundle)."""
    from ml_service.serving.app import ModelIntegrityError

    pinned = json.loads((onnx_bundle / METADATA_FILE).read_text())["sha256"]
    (onnx_bundle / "model.skops").write_bytes(b"not the model")
    sign(onnx_bundle)
    with pytest.raises(ModelIntegrityError, match="refusing to serve a model"):
        create_app(Settings(bundle_dir=onnx_bundle, model_sha256=pinned, scoring_log_dir=None))


def test_a_bundle_takes_its_training_facts_from_the_signed_card_not_the_registry_tags(
        cli, workdir, caplog):
    """A registry writer rewriting git_commit or a metric cannot get it into a signed bundle."""
    result, summary = cli.run()
    assert result.exit_code == 0, result.output
    untouched = cli("bundle", "--out", str(workdir / "a"))
    assert untouched.exit_code == 0, untouched.output
    assert "signed model card records" not in caplog.text  # rounded tags are not a rewrite
    settings = model_settings()
    client = MlflowClient(settings.resolved_tracking_uri)
    version = client.get_model_version(settings.model_name or "diabetes-ridge", "1")
    true_commit = version.tags["git_commit"]
    client.set_model_version_tag(version.name, "1", "git_commit", "f" * 40)
    client.log_metric(version.run_id, "rmse", 1.0)  # a flattering rewrite of the run
    exported = cli("bundle", "--out", str(workdir / "b"))
    assert exported.exit_code == 0, exported.output
    metadata = json.loads((workdir / "b" / METADATA_FILE).read_text())
    assert metadata["git_commit"] == true_commit
    assert metadata["metrics"]["rmse"] == pytest.approx(summary["candidate"]["rmse"])
    assert "is not the one its signed model card records" in caplog.text
