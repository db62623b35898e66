"""Production on a real Kubernetes cluster: rolling updates, smoke tests, automatic undo.

Needs the local cluster of `make cluster-up` (or any cluster the KUBECONFIG
names whose nodes run images from this Docker engine's registry) and skips
with the reason without one, unless REQUIRE_KUBERNETES=1 (as in .ci/run).
Images go to the local registry and the cluster pulls them by digest, as a
managed cluster pulls from GHCR. While promotions run, a load generator
scores through the production Service (a NodePort that kube-proxy opens on
127.0.0.1 only): no request may fail, during a good rollout or a failed one.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import random
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from ml_service.release.supply_chain import DockerInspector, seal_record
from tests.conftest import REPO, write_config
from tests.e2e.conftest import AUTH
from tests.e2e.test_release import _broken_image, alias, make, ok
from tests.servers import kubectl_binary, unavailable

pytestmark = pytest.mark.e2e

CACHE = Path(os.environ.get("MLOPS_CACHE_HOME", Path.home() / ".cache" / "mlops-template"))
OVERLAY = REPO / "tests" / "e2e" / "kubernetes" / "production-local"
NODE_PORT = 30080
ROWS = [[59.0, 2.0, 32.1, 101.0, 157.0, 93.2, 38.0, 4.0, 4.8598, 87.0]]


@pytest.fixture(scope="session")
def cluster() -> dict[str, str]:
    """KUBECONFIG and kubectl of a cluster that answers."""
    kubeconfig = os.environ.get("KUBECONFIG") or str(CACHE / "cluster" / "kubeconfig")
    kubectl = kubectl_binary() or "kubectl"
    if not Path(kubeconfig).is_file():
        unavailable(f"no Kubernetes cluster: {kubeconfig} does not exist (make cluster-up)",
                    "REQUIRE_KUBERNETES")
    try:
        ready = subprocess.run([kubectl, "--kubeconfig", kubeconfig, "get", "--raw=/readyz"],
                               capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"kubectl cannot be run ({exc})", "REQUIRE_KUBERNETES")
    if ready.returncode != 0:
        unavailable(f"the cluster of {kubeconfig} does not answer: {ready.stderr.strip()[:200]}",
                    "REQUIRE_KUBERNETES")
    return {"KUBECONFIG": kubeconfig, "MLOPS_KUBECTL": kubectl}


@contextlib.contextmanager
def cluster_lock(exclusive: bool = False):
    """Tests on the cluster share it; stopping and restarting it waits for them all
    (and they for it): the pytest-xdist workers may run them at the same time."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "e2e-cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


@pytest.fixture
def kube_env(env, cluster, local_registry):
    """make's environment for the Kubernetes target, in namespaces of this test's own."""
    with cluster_lock():
        yield from _kube_env(env, cluster, local_registry)


def _kube_env(env, cluster, local_registry):
    suffix = uuid.uuid4().hex[:6]
    values = {
        **env, **cluster,
        "MLOPS_DEPLOY_TARGET": "kubernetes",
        "MLOPS_IMAGE_REGISTRY": f"{local_registry}/e2e",
        "MLOPS_KUBE_NAMESPACE_QA": f"qa-{suffix}",
        "MLOPS_KUBE_NAMESPACE_PRODUCTION": f"production-{suffix}",
        "MLOPS_KUBE_OVERLAY_PRODUCTION": str(OVERLAY),
        "MLOPS_ROLLOUT_DEADLINE": "40",
    }
    yield values
    # The pods go at once (no graceful stop needed here), then the namespaces;
    # the images the pods ran are removed next, by the env fixture, which only
    # running containers would block.
    kubectl = [cluster["MLOPS_KUBECTL"], "--kubeconfig", cluster["KUBECONFIG"]]
    namespaces = [values[f"MLOPS_KUBE_NAMESPACE_{stage}"] for stage in ("QA", "PRODUCTION")]
    for namespace in namespaces:
        subprocess.run([*kubectl, "-n", namespace, "delete", "deployments,pods", "--all",
                        "--grace-period=0", "--force"], capture_output=True, timeout=120)
    subprocess.run([*kubectl, "delete", "namespace", *namespaces, "--ignore-not-found",
                    "--wait=false"], capture_output=True, timeout=60)
    deadline = time.monotonic() + 120

    def containers_left() -> bool:
        return any(subprocess.run(["docker", "ps", "-q", "--filter",
                                   f"label=io.kubernetes.pod.namespace={namespace}"],
                                  capture_output=True, text=True).stdout.strip()
                   for namespace in namespaces)

    while time.monotonic() < deadline and containers_left():
        time.sleep(1)


def kubectl_json(kube_env: dict, stage: str, *args: str) -> dict:
    namespace = kube_env[f"MLOPS_KUBE_NAMESPACE_{stage.upper()}"]
    result = subprocess.run([kube_env["MLOPS_KUBECTL"], "--kubeconfig", kube_env["KUBECONFIG"],
                             "-n", namespace, *args, "-o", "json"],
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def production_image(kube_env: dict) -> str:
    deployment = kubectl_json(kube_env, "production", "get", "deployment", "scoring")
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def story(kube_env: dict) -> str:
    """Production's pods (restarts, readiness) and events: what a failed load assertion shows."""
    namespace = kube_env["MLOPS_KUBE_NAMESPACE_PRODUCTION"]
    kubectl = [kube_env["MLOPS_KUBECTL"], "--kubeconfig", kube_env["KUBECONFIG"], "-n", namespace]
    pods = subprocess.run([*kubectl, "get", "pods", "-o", "wide"], capture_output=True, text=True,
                          timeout=30).stdout
    events = subprocess.run([*kubectl, "get", "events", "--sort-by=.lastTimestamp"],
                            capture_output=True, text=True, timeout=30).stdout
    return f"\n{pods}\n{events[-3000:]}"


class Load:
    """Scores through the production Service until stopped: as many clients as
    ``threads``, each at most ``rate`` requests per second, bounded in time and
    count. Each client keeps its connection alive, as real clients do (a pod
    that drains must tell them to reconnect), or with ``keep_alive=False``
    sends ``Connection: close`` and opens a new one per request. A failure is
    any answer but 200 and any connection error.

    The pace is steady traffic, not a saturation test: unpaced, the two
    clients alone took most of the 2 cores the cluster's control plane shares
    with them, which is not what a rollout is meant to survive.

    ``rows``: each request scores one of them, at random (default: one row
    always). ``recycle``: a client opens a new connection after that many
    requests, as pools and servers that cap a connection's requests do
    (kube-proxy balances connections, not requests, so a canary's share of
    a few connections kept forever is all or nothing).
    """

    def __init__(self, threads: int = 2, rate: float = 50, max_requests: int = 20_000,
                 max_seconds: float = 300, keep_alive: bool = True,
                 rows: list[list[float]] | None = None, recycle: int = 0):
        self.keep_alive, self.rows, self.recycle = keep_alive, rows or ROWS, recycle
        self.answered: collections.Counter[int] = collections.Counter()
        self.interval = 1 / rate
        self.url = f"http://127.0.0.1:{NODE_PORT}/score"
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: set[int] = set()
        self.lock = threading.Lock()
        self.budget = max_requests
        self.until = time.monotonic() + max_seconds
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.until and self.budget > 0:
            with requests.Session() as session:
                self._send(session)

    def _send(self, session: requests.Session) -> None:
        headers = {**AUTH, **({} if self.keep_alive else {"Connection": "close"})}
        next_at = time.monotonic()
        sent = 0
        while not self.stop.is_set() and time.monotonic() < self.until:
            if self.recycle and sent == self.recycle:
                return  # a new session: a new connection
            sent += 1
            next_at += self.interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))
            with self.lock:
                if self.budget <= 0:
                    return
                self.budget -= 1
            try:
                rows = [random.choice(self.rows)] if self.rows is not ROWS else ROWS
                response = session.post(self.url, json={"data": rows}, timeout=10,
                                        headers=headers)
                if response.status_code == 200:
                    version = response.json()["model"]["version"]
                    with self.lock:
                        self.ok += 1
                        self.versions.add(version)
                        self.answered[version] += 1
                else:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} HTTP "
                                         f"{response.status_code}: {response.text[:100]}")
            except requests.RequestException as exc:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: "
                                     f"{str(exc)[-160:]}")


def test_promotion_on_a_cluster_rolls_out_undoes_failures_and_rolls_back(
        kube_env, tmp_path, docker_client):
    env = kube_env
    name = env["MLOPS_MODEL_NAME"]
    client = MlflowClient(f"sqlite:///{env['MLOPS_STORE_DIR']}/mlflow.db",
                          f"sqlite:///{env['MLOPS_STORE_DIR']}/mlflow.db")

    # v1: image pushed, QA on the cluster, then production (2 replicas).
    weak = write_config(tmp_path, "weak.yaml", alpha=1000.0)
    ok(make(env, "pipeline", f"ARGS=--config {weak}"))
    started = time.monotonic()
    out = ok(make(env, "release"))
    assert "QA passed: version 1" in out and alias(env, "qa") == 1
    qa_seconds = time.monotonic() - started
    started = time.monotonic()
    out = ok(make(env, "promote"))
    first_promotion = time.monotonic() - started
    assert "promoted version 1 to production" in out and alias(env, "production") == 1
    ref_v1 = client.get_model_version(name, "1").tags["image.ref"]
    assert production_image(env) == ref_v1 and "@sha256:" in ref_v1

    # v2 replaces v1 while the load generator scores through the Service.
    ok(make(env, "pipeline"))
    ok(make(env, "release"))
    assert alias(env, "qa") == 2
    with Load() as load:
        time.sleep(2)
        started = time.monotonic()
        ok(make(env, "promote"))
        second_promotion = time.monotonic() - started
        time.sleep(16)  # the old pods stop after their 15 s preStop pause
    assert load.failures == [] and load.ok > 20, (load.ok, load.failures[:5], story(env))
    assert load.versions == {1, 2}
    assert alias(env, "production") == 2
    deployment = kubectl_json(env, "production", "get", "deployment", "scoring")
    assert deployment["status"]["readyReplicas"] == 2

    # v3 whose pods never get ready (the image refuses its model): undone. Its
    # bundle is signed as v3 (else the promotion refuses it before deploying).
    ok(make(env, "pipeline", f"ARGS=--config {write_config(tmp_path, 'c.yaml', alpha=3.0)} "
                             "--force"))
    image_v1 = client.get_model_version(name, "1").tags["image.id"]
    signed_v3 = _broken_image(docker_client, env, image_v1)
    never_ready = _push(docker_client, env, f"FROM {signed_v3}\nENV MLOPS_MODEL_SHA256="
                        f"{'0' * 64}\n", "never-ready")
    client.set_model_version_tag(name, "3", "image.ref", never_ready)
    client.set_registered_model_alias(name, "qa", "3")
    _as_if_qa_passed(client, docker_client, name, 3, never_ready)
    with Load(keep_alive=False) as load:
        started = time.monotonic()
        failed = make(env, "promote")
        undo_not_ready = time.monotonic() - started
    assert failed.returncode != 0 and "promote] Error 1" in failed.stderr, failed.stdout
    assert "production smoke test failed for version 3" in failed.stderr
    assert "were not ready within 40s" in failed.stderr
    assert "the rollout was undone: production is untouched and still serves version 2" in (
        failed.stderr)
    assert "alias 'production' unchanged" in failed.stderr
    assert load.failures == [] and load.versions == {2}, (load.ok, load.failures[:5], story(env))
    assert alias(env, "production") == 2 and production_image(env) == client.get_model_version(
        name, "2").tags["image.ref"]

    # v3 whose pods are ready but predict with another model: undone after the smoke test.
    wrong = _push_id(docker_client, env, signed_v3, "wrong-predictions")
    client.set_model_version_tag(name, "3", "image.ref", wrong)
    _as_if_qa_passed(client, docker_client, name, 3, wrong)
    with Load() as load:
        started = time.monotonic()
        failed = make(env, "promote")
        undo_wrong = time.monotonic() - started
    assert failed.returncode != 0 and "promote] Error 1" in failed.stderr, failed.stdout
    assert "failed its smoke test" in failed.stderr and "differ from the registry model's" in (
        failed.stderr)
    assert "still serves version 2" in failed.stderr
    assert load.failures == [] and load.versions <= {2, 3}, (load.ok, load.failures[:5], story(env))
    assert alias(env, "production") == 2

    # rollback on demand: back to v1.
    started = time.monotonic()
    out = ok(make(env, "rollback"))
    rollback_seconds = time.monotonic() - started
    assert "production serves version 1 again" in out
    assert alias(env, "production") == 1 and production_image(env) == ref_v1
    status = ok(make(env, "status"))
    assert "2/2 ready" in status and "rolled out" in status

    print(json.dumps({"qa_release_s": round(qa_seconds, 1),
                      "first_promotion_s": round(first_promotion, 1),
                      "promotion_under_load_s": round(second_promotion, 1),
                      "undo_not_ready_s": round(undo_not_ready, 1),
                      "undo_wrong_predictions_s": round(undo_wrong, 1),
                      "rollback_s": round(rollback_seconds, 1)}))


@pytest.fixture(scope="session")
def prometheus(cluster) -> str:
    """The URL of a Prometheus that scrapes the cluster's pods (make prometheus)."""
    url = os.environ.get("MLOPS_PROMETHEUS_URL") or "http://127.0.0.1:9090"
    try:
        requests.get(f"{url}/-/ready", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        unavailable(f"no Prometheus at {url} ({type(exc).__name__}): make prometheus",
                    "REQUIRE_PROMETHEUS")
    return url


SLOW = """import asyncio
from ml_service.serving import scoring
answer = scoring.ScoreHandler.respond
async def respond(self, headers, receive):
    await asyncio.sleep(0.2)
    return await answer(self, headers, receive)
scoring.ScoreHandler.respond = respond
"""


def test_canary_and_shadow_releases_judged_by_prometheus(
        kube_env, prometheus, tmp_path, docker_client):
    """A good version goes 10% -> 100%; a ready-but-wrong one and a slow one are removed
    at their first step, with no failed request, production's alias unchanged; the
    wrong one run as a shadow is flagged, with production's answers unchanged."""
    import pandas as pd

    summary = tmp_path / "summary.md"
    env = {**kube_env, "MLOPS_KUBE_OVERLAY_PRODUCTION": str(OVERLAY.parent / "production-canary"),
           "MLOPS_PROMETHEUS_URL": prometheus, "MLOPS_CANARY_STEPS": "10",
           "MLOPS_CANARY_STEP_SECONDS": "15", "MLOPS_CANARY_MIN_REQUESTS": "20",
           "SUMMARY_OUT": str(summary)}
    name = env["MLOPS_MODEL_NAME"]
    client = MlflowClient(f"sqlite:///{env['MLOPS_STORE_DIR']}/mlflow.db",
                          f"sqlite:///{env['MLOPS_STORE_DIR']}/mlflow.db")
    data = pd.read_csv(REPO / "data" / "diabetes.csv").drop(columns="target")
    rows = data.sample(200, random_state=0).to_numpy().tolist()

    def load() -> Load:
        return Load(rows=rows, recycle=10)

    def canary_left() -> bool:
        return bool(kubectl_json(env, "production", "get", "deployments")["items"][1:])

    # v1: the first promotion has no running version to compare with: one rollout.
    ok(make(env, "pipeline"))
    ok(make(env, "release"))
    out = ok(make(env, "promote"))
    assert "promoted version 1" in out and not summary.exists()

    # v2, a good model (another alpha): 10% asked, 1 of 5 pods, then all of them.
    good_config = write_config(tmp_path, "good.yaml", alpha=0.5)
    ok(make(env, "pipeline", f"ARGS=--force --config {good_config}"))
    ok(make(env, "release"))
    with load() as good:
        started = time.monotonic()
        out = ok(make(env, "promote"))
        good_seconds = time.monotonic() - started
        time.sleep(16)  # the canary's and the old pods' preStop pause
    assert "promoted version 2" in out and alias(env, "production") == 2
    assert good.failures == [] and good.answered[2] > 0, (good.answered, good.failures[:5],
                                                          story(env))
    report = summary.read_text()
    assert "| 1 | 10% asked: 1 of 5 pods (20%) |" in report and "| pass |" in report
    assert "**Promoted**: version 2 passed 1 step(s)" in report
    assert not canary_left() and production_image(env) == client.get_model_version(
        name, "2").tags["image.ref"]

    # v3, ready but wrong (an underfit model predicting about the mean; it passes
    # QA and its smoke test, which compare it with itself): removed at 20%.
    summary.unlink()
    wrong_config = write_config(tmp_path, "wrong.yaml", alpha=1000.0)
    ok(make(env, "pipeline", f"ARGS=--force --config {wrong_config}"))
    ok(make(env, "release"))
    with load() as wrong:
        started = time.monotonic()
        failed = make(env, "promote")
        wrong_seconds = time.monotonic() - started
        time.sleep(16)
    assert failed.returncode != 0, failed.stdout
    assert "canary step 1 (10% asked: 1 of 5 pods (20%)) failed its analysis" in failed.stderr
    assert "predictions shifted: population stability index" in failed.stderr
    assert "all traffic is back on version 2" in failed.stderr
    assert wrong.failures == [], (wrong.failures[:5], story(env))
    assert alias(env, "production") == 2 and not canary_left()
    assert "**Aborted**" in summary.read_text() and "**fail**" in summary.read_text()

    # v1 again but slow (200 ms added to every /score): removed on its p99.
    summary.unlink()
    slow = _push_context(docker_client, env, client.get_model_version(name, "1").tags["image.ref"],
                         "slow")
    client.set_model_version_tag(name, "1", "image.ref", slow)
    _as_if_qa_passed(client, docker_client, name, 1, slow)
    with load() as slowed:
        failed = make(env, "promote", "VERSION=1")
        time.sleep(16)
    assert failed.returncode != 0, failed.stdout
    assert "p99 latency:" in failed.stderr and "predictions shifted" not in failed.stderr, (
        failed.stderr)
    assert slowed.failures == [], (slowed.failures[:5], story(env))
    assert alias(env, "production") == 2 and not canary_left()

    # v3 (the wrong one) as a shadow: it scores a copy of every request, production's
    # answers stay version 2's, and the report flags it.
    shadow_env = {**env, "MLOPS_SHADOW_WINDOW": "20", "MLOPS_SHADOW_MIN_REQUESTS": "50"}
    reports = tmp_path / "reports"
    with load() as shadowed:
        started = time.monotonic()
        out = ok(make(shadow_env, "shadow", "VERSION=3"))
        assert "shadow: version 3 runs beside production's version 2" in out
        copies = 'sum(scoring_shadow_requests_total{namespace="%s",outcome="answered"})' % (
            env["MLOPS_KUBE_NAMESPACE_PRODUCTION"])
        assert wait_for_prometheus(prometheus, copies, 50, 90), story(env)
        copying_after = time.monotonic() - started
        time.sleep(20)  # a whole window of copies
        flagged = make(shadow_env, "shadow-report", f"ARGS=--out {reports}")
    assert flagged.returncode != 0 and "the shadow of version 3 was flagged" in flagged.stderr
    assert "agreement:" in flagged.stderr and "predictions shifted" in flagged.stderr
    assert "### Shadow: version 3 beside production's version 2 (**flagged**)" in (
        reports / "shadow.md").read_text()
    assert json.loads((reports / "shadow.json").read_text())["copies"]["answered"] >= 50
    assert client.get_model_version(name, "3").tags["shadow.verdict"] == "flagged"
    assert shadowed.failures == [] and set(shadowed.answered) == {2}, (
        shadowed.answered, shadowed.failures[:5])
    # A flagged shadow keeps a version out of production when it is required.
    refused = make({**env, "MLOPS_REQUIRE_SHADOW": "true"}, "promote", "VERSION=3")
    assert refused.returncode != 0 and "a shadow report that was flagged" in refused.stderr
    assert "shadow of version 3 removed" in ok(make(env, "shadow-stop"))

    print(json.dumps({"shadow_copying_after_s": round(copying_after, 1),
                      "good_canary_s": round(good_seconds, 1),
                      "wrong_abort_s": round(wrong_seconds, 1),
                      "answered_good": dict(good.answered), "answered_wrong": dict(wrong.answered),
                      "answered_slow": dict(slowed.answered)}))


def wait_for_prometheus(url: str, query: str, at_least: float, seconds: float) -> bool:
    """Whether ``query`` reaches ``at_least`` within ``seconds``."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        found = requests.get(f"{url}/api/v1/query", params={"query": query},
                             timeout=10).json()["data"]["result"]
        if found and float(found[0]["value"][1]) >= at_least:
            return True
        time.sleep(1)
    return False


def _push_context(docker_client, env: dict, base: str, tag: str) -> str:
    """``base`` with SLOW as its sitecustomize (on PYTHONPATH), pushed; its digest ref."""
    import io
    import tarfile

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in (("Dockerfile", f"FROM {base}\nCOPY sitecustomize.py /opt/slow/\n"
                                          "ENV PYTHONPATH=/opt/slow\n"),
                           ("sitecustomize.py", SLOW)):
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    context.seek(0)
    image, _ = docker_client.images.build(fileobj=context, custom_context=True, rm=True,
                                          pull=False, network_mode="none")
    return _push_id(docker_client, env, image.id, tag)


def _push(docker_client, env: dict, dockerfile: str, tag: str) -> str:
    """Build ``dockerfile`` (no context) and push it to the test registry; its digest ref."""
    import io

    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True,
                                          pull=False, network_mode="none")
    return _push_id(docker_client, env, image.id, tag)


def _push_id(docker_client, env: dict, image_id: str, tag: str) -> str:
    repository = f"{env['MLOPS_IMAGE_REGISTRY']}/{env['MLOPS_IMAGE_NAME']}".lower()
    image = docker_client.images.get(image_id)
    image.tag(repository, tag)
    for line in docker_client.images.push(repository, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
    image.reload()
    return next(d for d in image.attrs["RepoDigests"] if d.startswith(repository + "@"))


def test_make_kubeconfig_installs_the_secret_and_checks_access(cluster, tmp_path):
    """What the production job does with the environment's KUBE_CONFIG_DATA secret."""
    with cluster_lock():
        _kubeconfig(cluster, tmp_path)


def _kubeconfig(cluster, tmp_path):
    import base64

    target = tmp_path / "kube" / "config"
    env = {"KUBE_CONFIG_DATA": base64.b64encode(Path(cluster["KUBECONFIG"]).read_bytes()).decode(),
           "KUBECONFIG": str(target), "MLOPS_DEPLOY_TARGET": "kubernetes",
           "MLOPS_KUBECTL": cluster["MLOPS_KUBECTL"]}
    out = ok(make(env, "kubeconfig"))
    assert "installed the kubeconfig (1 context(s): local; current: local)" in out
    assert "the cluster at https://127.0.0.1:6443 answers" in out
    assert target.stat().st_mode & 0o777 == 0o600

    # In Actions: under the job's $RUNNER_TEMP, never the runner user's home, and
    # KUBECONFIG handed to the later steps.
    runner_temp, home, github_env = tmp_path / "runner-temp", tmp_path / "home", tmp_path / "env"
    runner_temp.mkdir()
    home.mkdir()
    out = ok(make({**env, "KUBECONFIG": "", "RUNNER_TEMP": str(runner_temp), "HOME": str(home),
                   "GITHUB_ENV": str(github_env)}, "kubeconfig"))
    assert f"as {runner_temp / 'kubeconfig'}" in out and "answers" in out
    assert github_env.read_text() == f"KUBECONFIG={runner_temp / 'kubeconfig'}\n"
    assert not (home / ".kube" / "config").exists()  # (kubectl keeps its cache there)


def test_make_cluster_down_and_up_leave_nothing_behind_and_start_a_ready_cluster(cluster):
    """The local cluster's own scripts, as a person runs them (alone: the others need it up)."""
    if Path(cluster["KUBECONFIG"]) != CACHE / "cluster" / "kubeconfig":
        pytest.skip("the cluster is not the local one of `make cluster-up`")
    with cluster_lock(exclusive=True):
        _down_and_up(cluster)


def _down_and_up(cluster):
    kubectl = [cluster["MLOPS_KUBECTL"], "--kubeconfig", cluster["KUBECONFIG"]]
    assert "cluster stopped" in ok(make({}, "cluster-down"))
    leftovers = subprocess.run(["docker", "ps", "-aq", "--filter",
                                "label=io.kubernetes.pod.name"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
    rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True)
    assert "KUBE-" not in rules.stdout
    started = time.monotonic()
    out = ok(make({}, "cluster-up"))
    assert "cluster up in" in out and f"export KUBECONFIG={CACHE / 'cluster' / 'kubeconfig'}" in out
    nodes = subprocess.run([*kubectl, "get", "nodes"], capture_output=True, text=True, timeout=30)
    assert " Ready " in nodes.stdout
    # The kubelet shares the machine's Docker engine: no image GC (it deleted the
    # base and QA images once a shared disk passed 85%), eviction only near full.
    configz = subprocess.run([*kubectl, "get", "--raw", "/api/v1/nodes/localhost/proxy/configz"],
                             capture_output=True, text=True, timeout=30, check=True)
    config = json.loads(configz.stdout)["kubeletconfig"]
    assert config["imageGCHighThresholdPercent"] == 100
    assert config["syncFrequency"] == "10s"  # Secrets and ConfigMaps reach the pods sooner
    assert {config["evictionHard"][signal] for signal in
            ("nodefs.available", "imagefs.available", "nodefs.inodesFree")} == {"1%"}
    print(json.dumps({"cluster_up_s": round(time.monotonic() - started, 1)}))


def _as_if_qa_passed(client, docker_client, name: str, version: int, ref: str) -> None:
    """Sign and record ``ref``'s evidence on ``version`` as QA does when it passes.

    Without it promote refuses the image before deploying anything (the
    supply-chain check); these cases are about what the cluster does after.
    """
    from tests.e2e.test_release import session_signer

    sealed = seal_record(session_signer(), name, version,
                         DockerInspector(docker_client).evidence(ref))
    for key, value in sealed.items():
        client.set_model_version_tag(name, str(version), key, value)
