"""The release path on a real Docker engine, through the make targets.

pipeline -> image -> release (QA) -> promote (production) -> a better model
replaces it -> a broken image fails production's smoke test and the previous
container keeps serving -> rollback.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import tarfile
import time

import pytest
import requests
import yaml
from mlflow import MlflowClient

from ml_service.bundle import sha256_file
from ml_service.release.supply_chain import DockerInspector, seal_record
from ml_service.serving.auth import key_id, new_key
from tests.conftest import REPO, write_config
from tests.e2e.conftest import API_KEY, AUTH
from tests.servers import free_port

pytestmark = pytest.mark.e2e


def make(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["make", "-C", str(REPO), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    return result


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def registry(env: dict) -> MlflowClient:
    uri = f"sqlite:///{env['MLOPS_STORE_DIR']}/mlflow.db"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def alias(env: dict, name: str) -> int | None:
    try:
        return int(registry(env).get_model_version_by_alias(env["MLOPS_MODEL_NAME"], name).version)
    except Exception:  # noqa: BLE001 - alias not set
        return None


def served_version(port: str) -> int:
    return requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["model"]["version"]


def mlops(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / ".venv" / "bin" / "mlops"), *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


def scores(url: str, key: str | None, expected: int, within: float = 10.0) -> None:
    """/score at ``url`` answers ``expected`` with ``key`` (None: no key), within a while."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    deadline = time.monotonic() + within
    while True:
        status = requests.post(f"{url}/score", json={"data": [ROW]}, headers=headers,
                               timeout=5).status_code
        if status == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == expected


ROW = [59.0, 2.0, 32.1, 101.0, 157.0, 93.2, 38.0, 4.0, 4.8598, 87.0]


def test_release_promote_replace_fail_safely_and_roll_back(env, tmp_path, docker_client):
    # No MLOPS_API_KEYS: each stage gets a key of its own at its first release.
    env = {k: v for k, v in env.items() if k != "MLOPS_API_KEYS"}
    weak = write_config(tmp_path, "weak.yaml", alpha=1000.0)
    ok(make(env, "pipeline", f"ARGS=--config {weak}"))

    # v1: image, QA, production
    out = ok(make(env, "image"))
    assert f"built {env['MLOPS_IMAGE_NAME']}:v1" in out
    image_v1 = registry(env).get_model_version(env["MLOPS_MODEL_NAME"], "1").tags["image.id"]
    out = ok(make(env, "release"))
    assert "QA passed: version 1" in out and alias(env, "qa") == 1
    assert served_version(env["MLOPS_QA_PORT"]) == 1
    # QA was given a key of its own (no MLOPS_API_KEYS): without it, 401.
    qa = f"http://127.0.0.1:{env['MLOPS_QA_PORT']}"
    made = ok(mlops(env, "api-keys", "--stage", "qa", "--reveal")).split()
    assert len(made) == 1
    scores(qa, None, 401)
    scores(qa, made[0], 200)
    shown = ok(make(env, "api-keys", "STAGE=qa"))
    assert f"qa accepts key {key_id(made[0])}" in shown and made[0] not in shown
    # Rotation, no redeploy: the new key beside the old, then the new key alone.
    rotated = new_key()
    ok(make({**env, "MLOPS_API_KEYS": f"{rotated},{made[0]}"}, "api-keys", "STAGE=qa", "SET=1"))
    scores(qa, rotated, 200)
    scores(qa, made[0], 200, within=0)
    ok(make({**env, "MLOPS_API_KEYS": rotated}, "api-keys", "STAGE=qa", "SET=1"))
    scores(qa, made[0], 401)
    scores(qa, rotated, 200, within=0)
    # The container serves its version's model card, with the run's figures ...
    card = requests.get(f"http://127.0.0.1:{env['MLOPS_QA_PORT']}/model-card", timeout=5).json()
    v1 = registry(env).get_model_version(env["MLOPS_MODEL_NAME"], "1")
    assert card["model"]["version"] == 1 and card["training"]["run_id"] == v1.run_id
    run = registry(env).get_run(v1.run_id)
    assert card["evaluation"]["metrics"] == {k: run.data.metrics[k] for k in
                                             card["evaluation"]["metrics"]}
    # ... and QA recorded what it tested, signed: the image, its SBOM and model hashes.
    assert v1.tags["qa.sbom.sha256"] == v1.tags["image.sbom.sha256"]
    metadata = json.loads(_read(docker_client, image_v1, "/opt/model/metadata.json"))
    assert v1.tags["qa.model.sha256"] == metadata["runtime"]["sha256"]  # the file it serves
    record = json.loads(v1.tags["qa.record"])
    assert record["evidence"] == {"image.id": image_v1, "sbom.sha256": v1.tags["qa.sbom.sha256"],
                                  "model.sha256": v1.tags["qa.model.sha256"]}
    assert (record["model"], record["version"]) == (env["MLOPS_MODEL_NAME"], 1)
    ok(make(env, "promote"))
    assert alias(env, "production") == 1 and served_version(env["MLOPS_PRODUCTION_PORT"]) == 1
    production = docker_client.containers.get(f"{env['MLOPS_MODEL_NAME']}-production")
    assert production.image.id == image_v1  # the digest that passed QA, not a rebuild

    # v2, a better model, goes through the same path and replaces v1
    ok(make(env, "pipeline"))
    assert alias(env, "champion") == 2
    ok(make(env, "release"))
    scores(qa, rotated, 200, within=0)  # a stage keeps its keys across releases
    ok(make(env, "promote"))
    assert alias(env, "production") == 2 and served_version(env["MLOPS_PRODUCTION_PORT"]) == 2
    production_keys = ok(mlops(env, "api-keys", "--stage", "production", "--reveal")).split()
    assert len(production_keys) == 1 and production_keys[0] not in (made[0], rotated)
    scores(f"http://127.0.0.1:{env['MLOPS_PRODUCTION_PORT']}", rotated, 401, within=0)
    names = [
        c.name
        for c in docker_client.containers.list(all=True, filters={"name": env["MLOPS_MODEL_NAME"]})
    ]
    assert sorted(names) == sorted([f"{env['MLOPS_MODEL_NAME']}-qa",
                                    f"{env['MLOPS_MODEL_NAME']}-production"])

    # v3 with a deliberately broken image: it starts healthy and says it is v3,
    # but it serves v1's model file
    worse = write_config(tmp_path, "worse.yaml", alpha=300.0)
    ok(make(env, "pipeline", f"ARGS=--config {worse} --force"))
    broken = _broken_image(docker_client, env, image_v1)
    client = registry(env)
    name = env["MLOPS_MODEL_NAME"]
    client.set_model_version_tag(name, "3", "image.id", broken)
    client.set_registered_model_alias(name, "qa", "3")
    # Not an image QA tested: refused before anything is deployed.
    result = make(env, "promote")
    assert result.returncode != 0 and "version 3 has no signed QA record" in result.stderr
    # A registry writer copies v2's signed record onto v3 ...
    v2_tags = client.get_model_version(name, "2").tags
    for key in ("qa.record", "qa.record.sig"):
        client.set_model_version_tag(name, "3", key, v2_tags[key])
    result = make(env, "promote")
    assert result.returncode != 0
    assert f"is signed, but for {name} version 2" in result.stderr
    # ... or rewrites it to name v3 and this image: the signature no longer matches.
    forged = json.loads(v2_tags["qa.record"])
    forged.update(version=3, evidence=DockerInspector(docker_client).evidence(broken))
    client.set_model_version_tag(name, "3", "qa.record", json.dumps(forged))
    result = make(env, "promote")
    assert result.returncode != 0 and "does not match its signature" in result.stderr
    assert served_version(env["MLOPS_PRODUCTION_PORT"]) == 2
    # An image built on v2's (its signed bundle and SBOM unchanged, one more layer of
    # code) put behind v2's tags: v2's signed record names another image ID.
    derived = _derived_image(docker_client, env, v2_tags["image.id"])
    client.set_model_version_tag(name, "2", "image.id", derived)
    result = make(env, "promote", "VERSION=2")
    assert result.returncode != 0
    assert "image ID" in result.stderr and "is not the one QA signed for version 2" in \
        result.stderr
    assert served_version(env["MLOPS_PRODUCTION_PORT"]) == 2
    client.set_model_version_tag(name, "2", "image.id", v2_tags["image.id"])
    # As if QA had passed this very image (signed with the pipeline's key):
    # production's own smoke test catches it.
    sealed = seal_record(session_signer(), name, 3,
                         DockerInspector(docker_client).evidence(broken))
    for key, value in sealed.items():
        client.set_model_version_tag(name, "3", key, value)
    result = make(env, "promote")
    assert result.returncode != 0
    assert "production smoke test failed for version 3" in result.stderr
    assert "differ from the registry model's" in result.stderr  # healthy, but wrong
    assert "production is untouched and still serves version 2" in result.stderr
    assert "alias 'production' unchanged" in result.stderr
    assert alias(env, "production") == 2
    assert served_version(env["MLOPS_PRODUCTION_PORT"]) == 2
    # An image its maker signed and trusts, recorded as v3's with matching QA hashes:
    # the repository's keys do not vouch for it, so nothing is deployed.
    foreign = _broken_image(docker_client, env, image_v1, foreign=True)
    client.set_model_version_tag(name, "3", "image.id", foreign)
    sealed = seal_record(session_signer(), name, 3,
                         DockerInspector(docker_client).evidence(foreign))
    for key, value in sealed.items():
        client.set_model_version_tag(name, "3", key, value)
    result = make(env, "promote")
    assert result.returncode != 0
    assert "which the repository does not trust" in result.stderr
    assert "nothing was deployed" in result.stderr
    assert served_version(env["MLOPS_PRODUCTION_PORT"]) == 2

    # rollback on demand: back to v1
    out = ok(make(env, "rollback"))
    assert "production serves version 1 again" in out
    assert alias(env, "production") == 1 and served_version(env["MLOPS_PRODUCTION_PORT"]) == 1

    status = ok(make(env, "status"))
    assert "production" in status and "healthy" in status


def _read(client, image: str, path: str) -> bytes:
    container = client.containers.create(image)
    try:
        stream, _ = container.get_archive(path)
        archive = io.BytesIO(b"".join(stream))
    finally:
        container.remove()
    with tarfile.open(fileobj=archive) as tar:
        return tar.extractfile(path.rsplit("/", 1)[1]).read()


def session_signer():
    """The pipeline's signer in these tests (the session's key)."""
    from pathlib import Path

    from ml_service.signing import Signer

    return Signer(None, Path(os.environ["MLOPS_SIGNING_KEY_FILE"]))


def _derived_image(client, env: dict, base: str) -> str:
    """``base`` plus one layer of other code: same bundle, same SBOM, another image."""
    dockerfile = (f"FROM {base}\nUSER root\nRUN [\"/opt/venv/bin/python\", \"-c\", \"import "
                  "pathlib; pathlib.Path('/opt/venv/patched.py').write_text('# not what QA "
                  "tested')\"]\nUSER 10001:10001\n")
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True,
                                   tag=f"{env['MLOPS_IMAGE_NAME']}:derived")
    return str(image.id)


def _broken_image(client, env: dict, image_v1: str, foreign: bool = False) -> str:
    """v2's image serving v1's model (its file and ONNX form) under metadata that claims v3.

    Signed with the trusted key, as if the pipeline had signed a wrong bundle:
    the service starts and serves it, and only a smoke test that compares
    predictions with the registry's model can tell. (Unsigned, the service
    would refuse to start: tests/integration/test_signed_models.py.)

    ``foreign``: signed instead by a key of the image's maker, which the image
    trusts (its /opt/trusted) and the repository does not.
    """
    import hashlib
    import tempfile
    from pathlib import Path

    from tests.conftest import sign

    image_v2 = registry(env).get_model_version(env["MLOPS_MODEL_NAME"], "2").tags["image.id"]
    model = _read(client, image_v1, "/opt/model/model.skops")
    onnx = _read(client, image_v1, "/opt/model/model.onnx")
    digest = hashlib.sha256(model).hexdigest()
    metadata = json.loads(_read(client, image_v2, "/opt/model/metadata.json"))
    metadata.update(version=3, sha256=digest)
    metadata["runtime"]["sha256"] = hashlib.sha256(onnx).hexdigest()
    card = json.loads(_read(client, image_v2, "/opt/model/model_card.json"))
    card["model"]["version"] = 3  # a consistent lie: the service starts and serves it
    bundle = {
        "model.skops": model,
        "model.onnx": onnx,
        "metadata.json": json.dumps(metadata).encode(),
        "model_card.json": json.dumps(card).encode(),
        "model_card.md": _read(client, image_v2, "/opt/model/model_card.md"),
        ".mlops-bundle": _read(client, image_v2, "/opt/model/.mlops-bundle"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in bundle.items():
            (Path(tmp) / name).write_bytes(data)
        if foreign:
            from ml_service.signing import Signer, new_key_pair

            private, public = new_key_pair()
            Signer(private.decode(), None).sign(Path(tmp))
        else:
            sign(Path(tmp))
        bundle["model.sig"] = (Path(tmp) / "model.sig").read_bytes()
    trust = "COPY maker.pub /opt/trusted/\n" if foreign else ""
    files = {
        "Dockerfile": (
            f"FROM {image_v2}\nCOPY {' '.join(bundle)} /opt/model/\n{trust}"
            f"ENV MLOPS_MODEL_SHA256={digest}\n"
        ).encode(),
        **bundle,
        **({"maker.pub": public} if foreign else {}),
    }
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = client.images.build(fileobj=context, custom_context=True, rm=True,
                                   tag=f"{env['MLOPS_IMAGE_NAME']}:"
                                       f"{'foreign' if foreign else 'broken'}")
    return image.id


def test_the_image_runs_as_non_root_healthy_and_refuses_a_wrong_model_hash(env, docker_client):
    ok(make(env, "pipeline"))
    ok(make(env, "image"))
    tags = registry(env).get_model_version(env["MLOPS_MODEL_NAME"], "1").tags
    image = docker_client.images.get(tags["image.id"])
    labels = image.labels
    assert labels["io.github.mlops-template.model.version"] == "1"
    assert labels["org.opencontainers.image.revision"] == tags["git_commit"]
    assert image.attrs["Config"]["User"] == "10001:10001"
    assert "Healthcheck" in image.attrs["Config"]

    # The model is served by its ONNX form: onnxruntime in the image is the
    # version its conversion was checked with at bundle time, and neither
    # scikit-learn nor onnxruntime's C API library (unused by Python) is there.
    import onnxruntime

    assert labels["io.github.mlops-template.model.runtime"] == "onnx"
    found = docker_client.containers.run(image.id, ["/opt/venv/bin/python", "-c", """
import importlib.util, onnxruntime, pathlib
print(onnxruntime.__version__, importlib.util.find_spec("sklearn") is None,
      list(pathlib.Path(onnxruntime.__file__).parent.rglob("libonnxruntime.so*")))
"""], remove=True).decode().split()
    assert found == [onnxruntime.__version__, "True", "[]"]
    # what the service needs to ship its scoring log to object storage
    docker_client.containers.run(
        image.id, ["/opt/venv/bin/python", "-c", "import adlfs, fsspec"], remove=True)
    with pytest.raises(Exception):  # noqa: B017 - MLflow must not be in the image
        docker_client.containers.run(image.id, ["/opt/venv/bin/python", "-c", "import mlflow"],
                                     remove=True)
    # Only the virtual environment reached the runtime stage: no wheels, no
    # installer, no test suites; every module precompiled.
    leftovers = docker_client.containers.run(image.id, ["/opt/venv/bin/python", "-c", """
import importlib.util, pathlib, sys
site = pathlib.Path(sys.prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                    "site-packages")
found = [m for m in ("pip", "setuptools") if importlib.util.find_spec(m)]
found += [str(p) for p in site.rglob("tests") if p.is_dir()][:3]
found += [str(p) for p in pathlib.Path("/tmp").iterdir()]
found += [] if any(site.rglob("numpy/__pycache__/*.pyc")) else ["no .pyc"]
print(found)
"""], remove=True).decode().strip()
    assert leftovers == "[]"

    # healthy on its own HEALTHCHECK, as uid 10001
    port = free_port()
    container = docker_client.containers.run(image.id, detach=True,
                                             ports={"8080/tcp": ("127.0.0.1", port)},
                                             environment={"MLOPS_API_KEYS": API_KEY})
    started = time.monotonic()
    try:
        while container.attrs["State"].get("Health", {}).get("Status") != "healthy":
            assert time.monotonic() - started < 90, container.logs().decode()[-2000:]
            time.sleep(1)
            container.reload()
        assert container.exec_run("id -u").output.decode().strip() == "10001"
        assert served_version(str(port)) == 1
    finally:
        container.remove(force=True)

    # a model hash that does not match stops the start
    tampered = docker_client.containers.run(
        image.id, detach=True, environment={"MLOPS_MODEL_SHA256": "0" * 64}
    )
    try:
        assert tampered.wait(timeout=60)["StatusCode"] != 0
        assert "refusing to serve" in tampered.logs().decode()
    finally:
        tampered.remove(force=True)

    # without API keys it does not start open: exit 3, saying what to set
    keyless = docker_client.containers.run(image.id, detach=True)
    try:
        assert keyless.wait(timeout=60)["StatusCode"] == 3
        assert "no API keys for /score" in keyless.logs().decode()
    finally:
        keyless.remove(force=True)


def test_the_bundle_hash_in_the_image_matches_the_registry_model(env, tmp_path, docker_client):
    ok(make(env, "pipeline"))
    bundle = tmp_path / "bundle"
    result = subprocess.run(
        [str(REPO / ".venv/bin/mlops"), "bundle", "--out", str(bundle)],
        env={**os.environ, **env}, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert metadata["sha256"] == sha256_file(bundle / "model.skops")
    assert metadata["version"] == 1 and metadata["feature_names"][0] == "age"
    runtime = metadata["runtime"]  # the ONNX form, checked on the examples and the holdout
    assert runtime["kind"] == "onnx" and runtime["sha256"] == sha256_file(bundle / "model.onnx")
    assert runtime["checked_on"] == "the spec's example rows and the holdout of diabetes.csv"
    assert runtime["max_abs_difference"] <= 1e-9 and runtime["checked_rows"] > 80
    assert "served by ONNX, checked on" in result.stdout


def test_push_then_promote_on_an_engine_without_the_image_pulls_the_same_digest(
    env, docker_client, local_registry
):
    env = {**env, "MLOPS_IMAGE_REGISTRY": f"{local_registry}/E2E"}
    ok(make(env, "pipeline"))
    ok(make(env, "release"))
    out = ok(make(env, "push"))
    tags = registry(env).get_model_version(env["MLOPS_MODEL_NAME"], "1").tags
    ref = tags["image.ref"]
    assert ref.startswith(f"{local_registry}/e2e/{env['MLOPS_IMAGE_NAME']}@sha256:")  # lower-cased
    assert ref in out

    # Forget the image locally, as on a fresh production runner.
    docker_client.containers.get(f"{env['MLOPS_MODEL_NAME']}-qa").remove(force=True)
    docker_client.images.remove(tags["image.id"], force=True)
    ok(make(env, "promote"))
    production = docker_client.containers.get(f"{env['MLOPS_MODEL_NAME']}-production")
    assert production.image.id == tags["image.id"]
    # no capabilities, no privilege escalation, bounded memory and processes
    host = production.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Memory"] == 2**30 and host["PidsLimit"] == 256 and host["ReadonlyRootfs"]
    assert served_version(env["MLOPS_PRODUCTION_PORT"]) == 1


def _outputs(path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_a_production_job_deploys_its_own_runs_version_and_digest_not_alias_qa(
    env, tmp_path, docker_client, local_registry
):
    """Run B's QA job moves alias qa while run A awaits approval: A still deploys A."""
    env = {**env, "MLOPS_IMAGE_REGISTRY": f"{local_registry}/e2e"}
    ok(make(env, "pipeline", f"ARGS=--config {write_config(tmp_path, 'weak.yaml', alpha=1000.0)}"))
    ok(make(env, "pipeline"))  # a better model: version 2
    runs = {}
    for run, version in (("a", 1), ("b", 2)):  # each run's QA job, as release.yml runs it
        ok(make(env, "release", f"VERSION={version}"))
        ok(make(env, "push", f"VERSION={version}", f"OUTPUTS_OUT={tmp_path / run}.txt"))
        runs[run] = _outputs(tmp_path / f"{run}.txt")
    a, b = runs["a"], runs["b"]
    assert a["version"] == "1" and b["version"] == "2" and a["digest"] != b["digest"]
    assert alias(env, "qa") == 2  # run B moved it
    name = env["MLOPS_MODEL_NAME"]
    tags_a = registry(env).get_model_version(name, "1").tags
    assert tags_a["image.ref"] == f"{a['image']}@{a['digest']}"

    # Run A's version with run B's digest: refused, nothing deployed.
    result = make(env, "promote", "VERSION=1", f"DIGEST={b['digest']}")
    assert result.returncode != 0 and "promote] Error 1" in result.stderr
    assert f"not {b['digest']}" in result.stderr and "nothing was deployed" in result.stderr
    assert alias(env, "production") is None
    assert not docker_client.containers.list(all=True, filters={"name": f"{name}-production"})

    # Run A's production job, approved now, as release.yml writes it: its env with
    # `needs.qa.outputs` of run A, then its promote step's command. It deploys A.
    job = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())[
        "jobs"]["production"]
    job_env = {name: re.sub(r"\$\{\{ needs\.qa\.outputs\.(\w+) \}\}",
                            lambda m: a[m[1]], str(value))
               for name, value in job["env"].items() if "needs.qa.outputs" in str(value)}
    assert job_env == {"VERSION": a["version"], "DIGEST": a["digest"]}
    step = next(s for s in job["steps"] if s.get("run", "").startswith("make promote"))
    out = ok(make({**env, **job_env}, *shlex.split(step["run"])[1:]))
    assert "promoted version 1 to production" in out and a["digest"] in out
    assert alias(env, "production") == 1 and alias(env, "qa") == 2
    assert served_version(env["MLOPS_PRODUCTION_PORT"]) == 1
    production = docker_client.containers.get(f"{name}-production")
    assert production.attrs["Config"]["Image"] == f"{a['image']}@{a['digest']}"
    assert production.image.id == tags_a["image.id"]

    # The attest job's `make sbom`: the SBOM read back from the pushed digest is
    # the one recorded at build; a tag instead of a digest is refused.
    sbom = tmp_path / "sbom.cdx.json"
    out = ok(make(env, "sbom", f"IMAGE={a['image']}@{a['digest']}", f"SBOM_OUT={sbom}"))
    assert hashlib.sha256(sbom.read_bytes()).hexdigest() == tags_a["image.sbom.sha256"]
    result = make(env, "sbom", f"IMAGE={a['image']}:v1")
    assert result.returncode != 0 and "is not an image digest" in result.stderr


async def _load(url: str, requests_total: int, clients: int) -> tuple[int, dict[str, int]]:
    """Send ``requests_total`` /score requests of 1-3 rows from ``clients`` clients."""
    import aiohttp

    rows = [[59.0, 2.0, 32.1, 101.0, 157.0, 93.2, 38.0, 4.0, 4.8598, 87.0],
            [48.0, 1.0, 21.6, 87.0, 183.0, 103.2, 70.0, 3.0, 3.8918, 69.0],
            [72.0, 2.0, 30.5, 93.0, 156.0, 93.6, 41.0, 4.0, 4.6728, 85.0]]
    scored: dict[str, int] = {}
    counter = iter(range(requests_total))

    async def client(session):
        for i in counter:
            size = 1 + i % 3
            async with session.post(url, json={"data": rows[:size]}) as response:
                assert response.status == 200, await response.text()
                scored[(await response.json())["request_id"]] = size

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                     headers=AUTH) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return sum(scored.values()), scored


def test_on_the_team_server_no_row_scored_under_load_is_lost_and_promotion_works(
    env, docker_client, team_server
):
    """Release against the PostgreSQL-backed server; 10,000 requests; SIGTERM; promote."""
    env = {**env, "MLFLOW_TRACKING_URI": team_server}
    ok(make(env, "pipeline"))
    ok(make(env, "release"))
    name = f"{env['MLOPS_MODEL_NAME']}-qa"
    total, scored = asyncio.run(
        _load(f"http://127.0.0.1:{env['MLOPS_QA_PORT']}/score", 10_000, clients=8)
    )
    container = docker_client.containers.get(name)
    image = container.image.id
    container.stop(timeout=60)  # SIGTERM: uvicorn shuts down, the log drains
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0, container.logs().decode()[-2000:]

    # Read off the volume as an archive (never through `docker logs`, which can
    # return before the engine has copied all of a container's output).
    box = docker_client.containers.create(
        image, ["true"],
        volumes={f"{name}-scoring-log": {"bind": "/var/log/scoring", "mode": "ro"}})
    try:
        stream, _ = box.get_archive("/var/log/scoring")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            files = sorted((m for m in archive.getmembers() if m.name.endswith(".jsonl")),
                           key=lambda m: m.name)
            dump = "".join(archive.extractfile(m).read().decode() for m in files)
    finally:
        box.remove(force=True)
    logged = [json.loads(line) for line in dump.splitlines()]
    per_request: dict[str, int] = {}
    for line in logged:
        per_request[line["request_id"]] = per_request.get(line["request_id"], 0) + 1
    assert {k: v for k, v in per_request.items() if k in scored} == scored  # zero loss
    # The only other request is the release's smoke test (5 rows).
    assert sorted(v for k, v in per_request.items() if k not in scored) == [5]
    assert len(logged) == total + 5

    ok(make(env, "promote"))
    client = MlflowClient(tracking_uri=team_server, registry_uri=team_server)
    for alias_name in ("champion", "qa", "production"):
        assert client.get_model_version_by_alias(env["MLOPS_MODEL_NAME"], alias_name).version == "1"
    assert served_version(env["MLOPS_PRODUCTION_PORT"]) == 1
