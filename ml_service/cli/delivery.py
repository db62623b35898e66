"""Release-workflow gates: production-check, sbom."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ml_service.cli.common import append, err, guarded, out
from ml_service.errors import MlopsError

app = typer.Typer()
SBOM_OUT = Path("reports/sbom.cdx.json")


@app.command("production-check")
@guarded
def production_check(
    outputs: Annotated[Optional[Path], typer.Option(
        help="Append deploy=true|false here ($GITHUB_OUTPUT).")] = None,
    environment: Annotated[str, typer.Option(help="The GitHub environment.")] = "production",
) -> None:
    """Decide whether the production job deploys: a target configured, reviewers required.

    Reads DEPLOY_TARGET and ALLOW_UNREVIEWED_PRODUCTION (the repository
    variables of those names, passed by the workflow), the environment's
    protection rules and this run's (GITHUB_RUN_ID) approvals from the GitHub API,
    and refuses to deploy without the QA job's VERSION and DIGEST.
    """
    from ml_service.github import github_env, notice
    from ml_service.release.approval import (
        fetch_approvals,
        fetch_environment,
        production_verdict,
    )

    target = os.environ.get("DEPLOY_TARGET", "").strip()
    allow = os.environ.get("ALLOW_UNREVIEWED_PRODUCTION", "").strip().lower() == "true"
    found, approvals = None, None
    if target:
        found = fetch_environment(*github_env(), environment)
        run_id = os.environ.get("GITHUB_RUN_ID")
        approvals = fetch_approvals(*github_env(), run_id) if run_id else []
    verdict = production_verdict(target, found, allow, environment, approvals)
    if verdict.deploy:
        handed_over = {name: os.environ.get(name, "") for name in ("VERSION", "DIGEST")}
        missing = [name for name, value in handed_over.items() if not value.strip()]
        if missing:  # promote would fall back to whatever holds alias qa now
            raise MlopsError(
                f"the QA job handed over no {' and no '.join(missing)}: production deploys "
                "only the version and digest its QA job passed (GitHub drops a job output "
                "that contains a secret's value); nothing was deployed")
    append(outputs, f"deploy={'true' if verdict.deploy else 'false'}\n")
    (err if verdict.warning else out).print(
        notice(verdict.message, "warning" if verdict.warning else "notice"),
        markup=False, highlight=False)


@app.command()
@guarded
def sbom(
    image: Annotated[str, typer.Option(help="The pushed image, name@sha256:...")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the SBOM.")] = SBOM_OUT,
) -> None:
    """Write the CycloneDX SBOM that the image ``--image`` carries (pulled by digest)."""
    from ml_service.release.ports import ReleaseError
    from ml_service.release.supply_chain import DockerInspector, sha256

    if "@sha256:" not in image:
        raise ReleaseError(f"{image} is not an image digest: the SBOM is read by digest")
    data = DockerInspector().sbom(image)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(data)
    out.print(f"wrote the SBOM of {image} to {out_path} (sha256 {sha256(data)[:12]})",
              markup=False)
