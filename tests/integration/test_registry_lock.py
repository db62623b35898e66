"""The registry lock admits one holder at a time, even when a stale lock is broken.

Against the team server (MLflow on PostgreSQL, two server workers), with
forked processes contending for real. Each holder appends enter/exit stamps
(CLOCK_MONOTONIC, one clock for all processes) to a shared file; the intervals
must never overlap.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid

from mlflow import MlflowClient

from ml_service.registry import Registry
from ml_service.settings import Settings

CONTENDERS, TRIALS = 4, 8


def _hold(uri: str, model: str, events: str, hold: float, stale_after: float,
          start_at: float) -> None:
    registry = Registry(Settings(MLFLOW_TRACKING_URI=uri, model_name=model))
    time.sleep(max(0.0, start_at - time.monotonic()))
    with registry.lock(timeout=120, stale_after=stale_after):
        _stamp(events, "enter")
        time.sleep(hold)
        _stamp(events, "exit")


def _stamp(events: str, what: str) -> None:
    line = f"{time.monotonic():.6f} {what} {os.getpid()}\n".encode()
    descriptor = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(descriptor, line)
    os.close(descriptor)


def _run(uri, model, events, holds, stale_after, delays) -> list[tuple[float, str, str]]:
    context = multiprocessing.get_context("fork")
    start = time.monotonic() + 0.5  # all released at the same moment
    processes = [context.Process(target=_hold, args=(uri, model, events, hold, stale_after,
                                                     start + delay))
                 for hold, delay in zip(holds, delays)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(180)
        assert process.exitcode == 0
    with open(events) as handle:
        return sorted((float(t), what, pid) for t, what, pid in
                      (line.split() for line in handle))


def assert_one_inside_at_a_time(events, holders: int) -> None:
    inside = None
    for _, what, pid in events:
        if what == "enter":
            assert inside is None, f"{pid} entered while {inside} was inside"
            inside = pid
        else:
            assert inside == pid
            inside = None
    assert len(events) == 2 * holders


def stale_lock(client: MlflowClient, model: str) -> None:
    old = f"{time.time() - 3600:.3f}"
    client.create_registered_model(f"{model}--lock", tags={
        "holder": "gone-host:1:dead", "acquired": old, "heartbeat": old})


def test_contenders_breaking_a_stale_lock_never_hold_it_together(tmp_path, team_server):
    client = MlflowClient(tracking_uri=team_server, registry_uri=team_server)
    for trial in range(TRIALS):
        model = f"lock-{uuid.uuid4().hex[:8]}"
        stale_lock(client, model)
        events = str(tmp_path / f"events-{trial}.txt")
        found = _run(team_server, model, events, [0.1] * CONTENDERS, 30.0, [0.0] * CONTENDERS)
        assert_one_inside_at_a_time(found, CONTENDERS)
        assert not client.search_registered_models(f"name LIKE '{model}--lock%'")


def test_a_holder_that_runs_past_the_stale_age_keeps_the_lock(tmp_path, team_server):
    """Its heartbeat shows it alive: the second pipeline waits instead of breaking in."""
    model = f"lock-{uuid.uuid4().hex[:8]}"
    events = str(tmp_path / "events.txt")
    found = _run(team_server, model, events, [3.0, 0.1], 1.0, [0.0, 0.5])
    assert_one_inside_at_a_time(found, 2)


def test_a_holder_never_releases_a_lock_that_is_no_longer_its_own(team_server):
    model = f"lock-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=team_server, registry_uri=team_server)
    registry = Registry(Settings(MLFLOW_TRACKING_URI=team_server, model_name=model))
    with registry.lock(stale_after=600):
        # Someone broke it and took it (as an operator deleting a stuck lock would).
        client.delete_registered_model(f"{model}--lock")
        client.create_registered_model(f"{model}--lock", tags={"holder": "successor"})
    assert client.get_registered_model(f"{model}--lock").tags["holder"] == "successor"
