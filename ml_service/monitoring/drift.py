"""Drift checks: logged scoring requests against the training data.

Per feature and for the prediction: the population stability index (PSI, over
quantile bins of the reference) and scipy's two-sample Kolmogorov-Smirnov
test. Thresholds come from the ``monitoring`` section of the config.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ml_service.spec import ModelSpec, point_predictions
from ml_service.stability import psi_of_counts
from ml_service.training.config import MonitoringConfig

Columns = dict[str, np.ndarray]


@dataclass
class ColumnDrift:
    """Drift statistics of one column."""

    name: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    reference_mean: float
    current_mean: float
    drifted: bool


@dataclass
class DriftReport:
    """All columns, and whether any drifted."""

    reference_rows: int
    current_rows: int
    columns: list[ColumnDrift] = field(default_factory=list)
    rules: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> list[str]:
        """Names of the drifted columns."""
        return [c.name for c in self.columns if c.drifted]

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form, with the drifted column names."""
        return {**asdict(self), "drifted": self.drifted}


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference``.

    Bins are the reference's quantiles (so each holds about the same share of
    the reference), widened to cover every value; a reference of at most
    ``bins`` distinct values (a binary feature, a classifier's predicted
    class) gets one bin per value instead, so a shift between two of them is
    seen. Empty bins get a small floor so the index stays finite.
    """
    reference, current = np.asarray(reference, float), np.asarray(current, float)
    values = np.unique(reference)
    if len(values) <= bins:  # discrete: one bin per value, split halfway between them
        edges = np.concatenate([[-np.inf], (values[:-1] + values[1:]) / 2, [np.inf]])
    else:
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))).copy()
        edges[0], edges[-1] = -np.inf, np.inf
    return psi_of_counts(np.histogram(reference, edges)[0], np.histogram(current, edges)[0])


def columns(spec: ModelSpec, model: Any, training: pd.DataFrame,
            logged: pd.DataFrame) -> tuple[Columns, Columns]:
    """(reference, current) columns to compare: every feature and the prediction.

    The reference prediction is the served model's on the training data, so
    a shift in predictions is measured against what the model did there.
    """
    names = spec.contract.feature_names
    features = training[names]
    reference = {name: features[name].to_numpy() for name in names}
    # A multi-class model's predicted class, as its scoring log records it.
    reference["prediction"] = point_predictions(spec.predict(model, features), spec.classes)
    current = {name: logged[name].to_numpy() for name in [*names, "prediction"]}
    return reference, current


def compare(reference: Columns, current: Columns, rules: MonitoringConfig) -> DriftReport:
    """Compare each column of ``current`` with the same column of ``reference``."""
    names = list(reference)
    report = DriftReport(
        reference_rows=len(reference[names[0]]), current_rows=len(current[names[0]]),
        rules=rules.model_dump(),
    )
    for name in names:
        ref, cur = np.asarray(reference[name], float), np.asarray(current[name], float)
        index = psi(ref, cur, rules.bins)
        ks = stats.ks_2samp(ref, cur)
        report.columns.append(ColumnDrift(
            name=name, psi=round(index, 4), ks_statistic=round(float(ks.statistic), 4),
            ks_pvalue=float(ks.pvalue), reference_mean=round(float(ref.mean()), 4),
            current_mean=round(float(cur.mean()), 4),
            drifted=bool(index > rules.psi_threshold and ks.pvalue < rules.ks_alpha),
        ))
    return report


def markdown(report: DriftReport, title: str) -> str:
    """The report as a Markdown summary (for the job summary and the CLI)."""
    verdict = (f"**drift detected** in {', '.join(report.drifted)}" if report.drifted
               else "no drift")
    rules = report.rules
    lines = [
        f"### {title}", "",
        f"{verdict}: {report.current_rows} logged rows against {report.reference_rows} "
        f"training rows (drift = PSI > {rules['psi_threshold']} and KS p < {rules['ks_alpha']}).",
        "", "| column | PSI | KS statistic | KS p-value | training mean | logged mean | drift |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in report.columns:
        lines.append(
            f"| {c.name} | {c.psi:.3f} | {c.ks_statistic:.3f} | {c.ks_pvalue:.2g} | "
            f"{c.reference_mean:.3f} | {c.current_mean:.3f} | {'⚠️ yes' if c.drifted else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def html_report(report: DriftReport, reference: Columns, current: Columns, title: str) -> str:
    """A self-contained HTML page: the table and one histogram per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, figures = [], []
    for c in report.columns:
        status = "drift" if c.drifted else "ok"
        rows.append(
            f'<tr class="{status}" id="row-{html.escape(c.name)}"><td>{html.escape(c.name)}</td>'
            f"<td>{c.psi:.3f}</td><td>{c.ks_statistic:.3f}</td><td>{c.ks_pvalue:.2g}</td>"
            f"<td>{c.reference_mean:.3f}</td><td>{c.current_mean:.3f}</td><td>{status}</td></tr>"
        )
        fig, ax = plt.subplots(figsize=(4.2, 2.8))
        ax.hist(reference[c.name], bins=30, alpha=0.55, density=True, label="training")
        ax.hist(current[c.name], bins=30, alpha=0.55, density=True, label="logged")
        ax.set_title(f"{c.name} (PSI {c.psi:.2f})")
        ax.legend(fontsize=7)
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        encoded = base64.b64encode(buffer.getvalue()).decode()
        figures.append(f'<figure><img alt="{html.escape(c.name)} histogram" '
                       f'src="data:image/png;base64,{encoded}"></figure>')
    verdict = ("Drift detected in " + ", ".join(report.drifted)) if report.drifted else "No drift"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; }}
tr.drift {{ background: #fde2e1; }} figure {{ display: inline-block; margin: .5rem; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p id="verdict">{html.escape(verdict)}: {report.current_rows} logged rows against
{report.reference_rows} training rows.</p>
<table id="drift-table"><thead><tr><th>column</th><th>PSI</th><th>KS statistic</th>
<th>KS p-value</th><th>training mean</th><th>logged mean</th><th>status</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<section id="plots">{''.join(figures)}</section>
</body></html>
"""
