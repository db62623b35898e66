"""Shadow releases on Kubernetes: shadow, shadow-report, shadow-stop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ml_service.cli.common import VersionOption, append, connected, guarded, out
from ml_service.errors import ShadowFlagged, UsageError

if TYPE_CHECKING:
    from ml_service.release.kubernetes_target import KubernetesTarget
    from ml_service.settings import Settings

app = typer.Typer()


def _cluster(settings: Settings) -> KubernetesTarget:
    from ml_service.release.kubernetes_target import KubernetesTarget

    if settings.deploy_target != "kubernetes":
        raise UsageError("a shadow runs beside production on Kubernetes "
                         "(MLOPS_DEPLOY_TARGET=kubernetes); a Docker host has none")
    return KubernetesTarget(settings)


@app.command()
@guarded
def shadow(version: VersionOption = None) -> None:
    """Run a version that passed QA beside production, on a copy of its live traffic.

    Without --version, the version with alias 'qa'. Its image gets the checks
    a promotion makes; production's answers do not change. MLOPS_SHADOW_FRACTION
    of the requests are copied (all by default).
    """
    from ml_service.release import shadow as sh
    from ml_service.release.promotion import checked_image
    from ml_service.release.smoke import smoke_check
    from ml_service.release.supply_chain import DockerInspector

    settings, spec, registry = connected()
    target = _cluster(settings)
    version = version or registry.alias_version("qa")
    if version is None:
        raise UsageError("no version has passed QA yet: run `mlops release` first")
    keys = target.read_keys("production")
    if not keys or target.current_version("production") is None:
        raise UsageError("nothing runs in production yet: a shadow is compared with it, so "
                         "promote a version first")
    image = checked_image(registry, target, version,
                          DockerInspector(trusted=settings.signing_trusted))
    low, high = spec.prediction_range
    tolerance = (settings.shadow_tolerance if settings.shadow_tolerance is not None
                 else 0.05 * (high - low))
    url = sh.start(target, version, image,
                   smoke_check(registry, spec, version, settings.smoke_deadline), keys[0],
                   settings.shadow_fraction, tolerance)
    out.print(f"[green]shadow[/]: version {version} runs beside production's version "
              f"{target.current_version('production')} at {url}; production's pods copy "
              f"{settings.shadow_fraction:.0%} of /score requests to it from their kubelet's "
              f"next sync (rows agree within {tolerance:g}). `mlops shadow-report` compares "
              "them, `mlops shadow-stop` ends it.")


@app.command("shadow-report")
@guarded
def shadow_report(
    window: Annotated[Optional[float], typer.Option(
        help="Seconds of live traffic to look at [default: MLOPS_SHADOW_WINDOW].")] = None,
    markdown: Annotated[Optional[Path], typer.Option(
        help="Also append the report here ($GITHUB_STEP_SUMMARY).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="Report directory [default: reports/shadow].")] = None,
    fail: Annotated[bool, typer.Option(
        "--fail/--no-fail", help="Exit 4 when the shadow is flagged.")] = True,
) -> None:
    """Compare the shadow with production over the last window (Prometheus); exit 4 if
    it is flagged. The verdict is recorded on the shadow's version (tags shadow.*)."""
    from ml_service.release import shadow as sh
    from ml_service.release.canary import Plan
    from ml_service.release.promotion import SHADOW_VERDICT

    settings, _, registry = connected()
    target = _cluster(settings)
    version = sh.running_version(target)
    if version is None:
        raise UsageError("no shadow runs in production: start one with `mlops shadow`")
    if not settings.prometheus_url:
        raise UsageError("the report asks Prometheus: set MLOPS_PROMETHEUS_URL (make "
                         "prometheus starts one on this machine)")
    plan = Plan([], 0, settings.prometheus_url.rstrip("/"), settings.canary_min_requests,
                settings.canary_max_error_rate, settings.canary_max_p99_ratio,
                settings.canary_p99_slack, settings.canary_max_psi)
    thresholds = sh.Thresholds(settings.shadow_min_requests, settings.shadow_min_agreement, plan)
    report = sh.report(target, version, thresholds, window or settings.shadow_window,
                       target.current_version("production"))
    text = report.markdown()
    directory = out_dir or settings.reports_dir / "shadow"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "shadow.md").write_text(text)
    (directory / "shadow.html").write_text(report.html())
    (directory / "shadow.json").write_text(json.dumps(report.as_json(), indent=2) + "\n")
    registry.set_version_tag(version, SHADOW_VERDICT, "passed" if report.passed else "flagged")
    registry.set_version_tag(version, "shadow.report",
                             json.dumps(report.as_json(), allow_nan=True)[:4900])
    append(markdown, text)
    out.print(text, markup=False, highlight=False)
    if not report.passed and fail:
        raise ShadowFlagged(f"the shadow of version {version} was flagged: "
                            f"{'; '.join(report.failures)}")


@app.command("shadow-stop")
@guarded
def shadow_stop() -> None:
    """Stop copying production's requests and remove the shadow."""
    from ml_service.release import shadow as sh
    from ml_service.settings import Settings

    target = _cluster(Settings())
    version = sh.running_version(target)
    sh.stop(target)
    out.print(f"shadow of version {version} removed" if version else "no shadow was running")
