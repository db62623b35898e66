"""No code runs from the registry.

Anyone who can write the registry (a team server, a restored artifact) could
register a model whose loading runs code. A pickle-format champion whose
unpickling would create a marker file is registered here; the gate, the pull
request's dry run, the release's bundle export and drift all refuse it, and
the marker never appears: unsigned, or signed by a key the repository does not
trust, it is refused before any byte is read (exit code 2). Behind the
signature the old checks stay: signed by the trusted key (a pipeline that
signed a bad model), a pickle-format model or a skops model holding a type
outside skops' defaults is still refused, whatever its MLmodel file claims.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import skops.io
import yaml

from tests.conftest import DATA, model_settings


class Payload:
    """Runs a shell command when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Foreign:
    """A type skops does not trust by default."""

    def predict(self, frame):
        return [0.0] * len(frame)


def register_champion(workdir: Path, save, signed: bool = True) -> int:
    """Register a model directory written by ``save(directory)`` and make it champion.

    ``signed``: signed by the session's trusted key, as if the pipeline had signed it.
    """
    settings = model_settings()
    uri = settings.resolved_tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(settings.experiment_name).experiment_id
    run = client.create_run(experiment)
    directory = workdir / "forged-model"
    save(directory)
    client.log_artifacts(run.info.run_id, str(directory), artifact_path="model")
    client.set_terminated(run.info.run_id)
    source = f"runs:/{run.info.run_id}/model"
    version = client.create_model_version(settings.model_name, source, run.info.run_id).version
    client.set_registered_model_alias(settings.model_name, "champion", version)
    if signed:
        from ml_service.registry import connect
        from ml_service.registry.signed import sign_version

        sign_version(connect(settings), int(version), directory)
    return int(version)


def pickled(marker: Path):
    def save(directory: Path) -> None:
        mlflow.sklearn.save_model(Payload(marker), str(directory),
                                  serialization_format="cloudpickle")
    return save


def foreign_skops(directory: Path) -> None:
    directory.mkdir(parents=True)
    skops.io.dump(Foreign(), directory / "model.skops")
    trusted = skops.io.get_untrusted_types(file=directory / "model.skops")
    (directory / "MLmodel").write_text(yaml.safe_dump({"flavors": {"sklearn": {
        "pickled_model": "model.skops", "serialization_format": "skops",
        "skops_trusted_types": trusted}}}))


def escaping_file_name(directory: Path) -> None:
    directory.mkdir(parents=True)
    (directory / "MLmodel").write_text(yaml.safe_dump({"flavors": {"sklearn": {
        "pickled_model": "../../../../etc/passwd", "serialization_format": "skops"}}}))


@pytest.fixture
def first(cli):
    result, summary = cli.run()
    assert summary["registered"], result.output
    return cli


def every_loader(cli, workdir: Path, version: int) -> dict[str, object]:
    """Run everything that loads the champion; return their results by name."""
    logs = workdir / "logs"
    logs.mkdir()
    rows = pd.read_csv(DATA).head(120)
    lines = [
        {"request_id": f"r{i}", "row": 0, "timestamp": "t", "model_name": "m",
         "model_version": version, **row, "prediction": 1.0}
        for i, row in enumerate(rows.drop(columns="target").to_dict("records"))
    ]
    pd.DataFrame(lines).to_json(logs / "scoring-x.jsonl", orient="records", lines=True)
    return {
        "gate": cli("run", "--config", str(alpha_config(workdir))),
        "dry run": cli("evaluate"),
        "bundle": cli("bundle", "--out", str(workdir / "bundle")),
        "drift": cli("drift", "--logs", str(logs), "--version", str(version)),
    }


def alpha_config(workdir: Path) -> Path:
    from tests.conftest import write_config

    return write_config(workdir, alpha=3.0)  # a new candidate, so the gate loads the champion


def test_an_unsigned_champion_is_refused_everywhere_before_anything_is_read(first, workdir):
    marker = workdir / "pwned"
    version = register_champion(workdir, pickled(marker), signed=False)
    for name, result in every_loader(first, workdir, version).items():
        assert result.exit_code == 2, (name, result.output)
        assert f"diabetes-ridge version {version} is not signed" in result.stderr, name
        assert "Traceback" not in result.output
    assert not marker.exists(), "a registry model ran code"
    assert not (workdir / "bundle").exists()


def test_a_champion_signed_by_another_key_is_refused_everywhere(first, workdir, monkeypatch):
    from ml_service import signing

    other = workdir / "other.pem"
    signing.write_private(other, signing.new_key_pair()[0])
    trusted_key = os.environ["MLOPS_SIGNING_KEY_FILE"]
    monkeypatch.setenv("MLOPS_SIGNING_KEY_FILE", str(other))
    marker = workdir / "pwned"
    version = register_champion(workdir, pickled(marker))
    monkeypatch.setenv("MLOPS_SIGNING_KEY_FILE", trusted_key)
    for name, result in every_loader(first, workdir, version).items():
        assert result.exit_code == 2, (name, result.output)
        assert "which the repository does not trust (1 trusted key(s)" in result.stderr, name
    assert not marker.exists(), "a registry model ran code"


def test_a_pickle_format_champion_is_refused_everywhere_and_never_unpickled(first, workdir):
    marker = workdir / "pwned"
    version = register_champion(workdir, pickled(marker))
    for name, result in every_loader(first, workdir, version).items():
        assert result.exit_code == 1, (name, result.output)
        assert "stored as cloudpickle, not skops: refusing to load it" in result.stderr, name
        assert "Traceback" not in result.output
    assert not marker.exists(), "a registry model ran code"
    assert not (workdir / "bundle").exists()


@pytest.mark.parametrize("save, message", [
    (foreign_skops, "contains types neither skops' defaults nor the spec's trusted_types allow"),
    (escaping_file_name, "which is not a plain file inside the model"),
])
def test_a_forged_skops_champion_is_refused(first, workdir, save, message):
    version = register_champion(workdir, save)
    for name, result in every_loader(first, workdir, version).items():
        assert result.exit_code == 1, (name, result.output)
        assert message in result.stderr, (name, result.stderr)


def test_the_cli_switches_off_mlflows_pickle_loading(first):
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"


def test_bundle_never_deletes_a_directory_that_is_not_a_bundle(first, workdir):
    precious = workdir / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    result = first("bundle", "--out", str(precious))
    assert result.exit_code == 2 and "not a model bundle" in result.stderr
    assert (precious / "thesis.tex").read_text() == "years of work"
    # Files named like a bundle's are not a bundle: only the marker an export writes is.
    lookalike = workdir / "lookalike"
    lookalike.mkdir()
    (lookalike / "metadata.json").write_text('{"my": "own"}')
    result = first("bundle", "--out", str(lookalike))
    assert result.exit_code == 2 and "not a model bundle" in result.stderr
    assert (lookalike / "metadata.json").read_text() == '{"my": "own"}'
    # an earlier bundle is replaced
    assert first("bundle", "--out", str(workdir / "b")).exit_code == 0
    assert first("bundle", "--out", str(workdir / "b")).exit_code == 0
    (workdir / "b" / "notes.txt").write_text("mine")  # ... unless something was added to it
    assert first("bundle", "--out", str(workdir / "b")).exit_code == 2
    assert (workdir / "b" / "notes.txt").read_text() == "mine"


def test_error_text_is_printed_as_it_is_not_as_markup(first, workdir):
    odd = workdir / "a[/]b[bold]"
    result = first("validate", "--data", str(odd))
    assert result.exit_code != 0
    assert "a[/]b[bold]" in result.stderr and "Traceback" not in result.output
