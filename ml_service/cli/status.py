"""`mlops status`: registered versions, aliases, metrics, and what runs where."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from ml_service.cli.common import JsonOption, connected, guarded, out, write_json
from ml_service.errors import MlopsError
from ml_service.settings import Settings
from ml_service.spec import ModelSpec

if TYPE_CHECKING:
    from ml_service.registry import VersionInfo

app = typer.Typer()

#: Metric columns shown: the gate's primary metric and the floors' (all are in --json-out).
SHOWN_METRICS = 2


@app.command()
@guarded
def status(json_out: JsonOption = None) -> None:
    """Show registered versions, their aliases and holdout metrics."""
    settings, spec, registry = connected()
    versions = registry.versions()
    write_json(json_out, {
        "model": registry.name,
        "tracking_uri": settings.shown_tracking_uri,
        "versions": [v.__dict__ for v in versions],
    })
    if not versions:
        out.print(f"no versions of '{registry.name}' registered yet: run `make pipeline`")
        return
    metrics = _shown_metrics(settings, spec)
    if spec.partition_keys:
        _print_sets(registry.name, settings, versions, metrics)
        return
    table = Table(title=f"{registry.name} @ {settings.shown_tracking_uri}",
                  title_justify="left")
    table.add_column("version")
    table.add_column("aliases")
    for metric in metrics:
        table.add_column(metric, justify="right")
    for column in ("created", "commit", "forced"):
        table.add_column(column)
    for v in versions:
        created = datetime.fromtimestamp(v.created / 1000, tz=timezone.utc)
        table.add_row(
            str(v.version),
            ", ".join(v.aliases),
            *[f"{v.metrics[m]:.3f}" if m in v.metrics else "" for m in metrics],
            created.strftime("%Y-%m-%d %H:%M"),
            v.tags.get("git_commit", "")[:8],
            v.tags.get("forced", ""),
        )
    out.print(table)
    _print_deployments(settings)


def _print_sets(name: str, settings: Settings, versions: list[VersionInfo],
                metrics: list[str]) -> None:
    """One row per registered set: partitions, decisions, worst metrics, the rule."""
    import json

    table = Table(title=f"{name} (many models) @ {settings.shown_tracking_uri}",
                  title_justify="left")
    table.add_column("version")
    table.add_column("aliases", no_wrap=True, min_width=8)
    for column in ("partitions", "promoted", "kept", "new", "unchanged", "invalid"):
        table.add_column(column, justify="right")
    for metric in metrics:
        table.add_column(f"worst {metric}", justify="right")
    table.add_column("rule", no_wrap=True)
    for v in versions:
        try:
            counts = json.loads(v.tags.get("set.counts", "{}"))
        except ValueError:
            counts = {}
        table.add_row(
            str(v.version), ", ".join(v.aliases), v.tags.get("set.partitions", ""),
            *[str(counts.get(k, 0)) for k in ("promoted", "kept", "new", "unchanged", "invalid")],
            *[v.tags.get(f"worst.{m}", "") for m in metrics],
            v.tags.get("set.rule", "").split(":", 1)[0],
        )
    out.print(table)
    out.print("[dim]a version whose rule failed is registered for inspection; alias "
              "'champion' stays on the last set that passed[/]")


def _shown_metrics(settings: Settings, spec: ModelSpec) -> list[str]:
    from ml_service.training.config import load_config

    try:
        gate = load_config(settings.config_file, spec).gate
        names = [gate.primary_metric, *gate.floor, *spec.metric_names]
    except MlopsError:  # a broken config must not hide the registry
        names = spec.metric_names
    return list(dict.fromkeys(names))[:SHOWN_METRICS]


def _print_deployments(settings: Settings) -> None:
    from ml_service.release.docker_target import DockerTarget
    from ml_service.release.kubernetes_target import KubernetesTarget

    target = (KubernetesTarget(settings) if settings.deploy_target == "kubernetes"
              else DockerTarget(settings))
    try:
        running = target.statuses()
    except MlopsError as exc:
        out.print(f"[dim]deployments: unknown ({exc})[/]")
        return
    if not running:
        out.print("[dim]deployments: no QA or production container[/]")
        return
    table = Table(title="deployments", title_justify="left")
    for column in ("stage", "version", "container", "status", "health", "image"):
        table.add_column(column)
    for d in running:
        table.add_row(d["stage"], d["version"], d["container"], d["status"], d["health"],
                      d["image"])
    out.print(table)
