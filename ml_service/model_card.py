"""The model card of a registered version: what a reviewer approves.

Built by the pipeline from what the run already knows (the spec, the data
contract, the dataset digest and row counts, the metrics with the gate's
interval, the slices, the data-validation result, the drift baseline, the git
commit and the spec's limitations), logged to the MLflow run as
``model_card/model_card.json`` and ``model_card/model_card.md``, baked into
the scoring image (``GET /model-card``) and written to the QA job's summary.

The JSON is the source; the Markdown is rendered from it alone
(:func:`markdown`), so both always say the same.
"""

from __future__ import annotations

import json
from typing import Any

SCHEMA = "mlops-template/model-card/v1"
JSON_FILE = "model_card.json"
MARKDOWN_FILE = "model_card.md"
#: Where the card is logged in the MLflow run.
ARTIFACT_DIR = "model_card"


def dumps(card: dict[str, Any]) -> str:
    """The card as stable, indented JSON."""
    return json.dumps(card, indent=2, sort_keys=True) + "\n"


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:.4g}"


def _interval(improvement: dict[str, Any] | None) -> str:
    if not improvement:
        return "no champion to compare with"
    point = f"{improvement['point']:+.2%}" if improvement.get("point") is not None else "—"
    if improvement.get("low") is None or improvement.get("high") is None:
        return f"{point} (no interval could be computed)"
    return (f"{point} ({improvement['confidence']:.0%} CI {improvement['low']:+.2%} to "
            f"{improvement['high']:+.2%}; paired bootstrap, {improvement['resamples']} "
            f"resamples of {improvement['rows']} holdout rows, seed {improvement['seed']})")


def markdown(card: dict[str, Any]) -> str:
    """Render a card (:mod:`ml_service.training.card`, :mod:`ml_service.many.card`) as Markdown."""
    if card.get("kind") == "model-set":
        return _set_markdown(card)
    model, data, evaluation = card["model"], card["data"], card["evaluation"]
    training, gate = card["training"], card["gate"]
    champion = evaluation.get("champion_version")
    label = f"champion v{champion}" if champion else "champion"
    lines = [
        f"## Model card: {model['name']} version {model['version']}",
        "",
        f"**Intended use.** {model['description'] or 'not stated by the spec'} "
        f"Served prediction: `{model['output']}` of the {model['estimator']}.",
        "",
        f"**Gate.** {gate['decision']}{' (forced)' if gate['forced'] else ''}: {gate['reason']}",
        "",
        "### Metrics on the holdout",
        "",
        f"| metric | this version | {label} | better when |",
        "|---|---:|---:|---|",
    ]
    theirs = evaluation.get("champion") or {}
    for name, value in evaluation["metrics"].items():
        direction = "higher" if name in evaluation["higher_is_better"] else "lower"
        lines.append(f"| {name} | {_number(value)} | {_number(theirs.get(name))} | {direction} |")
    lines += ["", f"**{evaluation['primary_metric']} improvement over the {label}:** "
                  f"{_interval(evaluation.get('improvement'))}"]
    if evaluation["slices"]:
        lines += ["", f"### {evaluation['primary_metric']} by slice", "",
                  f"| slice | rows | this version | {label} | change |",
                  "|---|---:|---:|---:|---:|"]
        for row in evaluation["slices"]:
            change = "—" if row["change"] is None else f"{row['change']:+.2%}"
            lines.append(f"| {row['slice']}={row['group']} | {row['rows']} | "
                         f"{_number(row['candidate'])} | {_number(row['champion'])} | {change} |")
        worse = [r for r in evaluation["slices"] if r["change"] is not None and r["change"] < 0]
        if worse:
            lines += ["", "Worse than the champion on: " + ", ".join(
                f"{r['slice']}={r['group']} ({r['change']:+.2%}, {r['rows']} rows)"
                for r in worse) + "."]
    lines += _class_lines(evaluation.get("classes"))
    lines += [
        "",
        "### Data",
        "",
        f"- Dataset `{data['name']}`, digest `{data['digest'][:16]}`: {data['rows']} rows, "
        f"{data['train_rows']} for training and {data['holdout_rows']} held out "
        f"(holdout fraction {data['holdout_fraction']}, assigned by a hash of each row).",
        f"- Target `{data['target']}`; features: " + ", ".join(
            f"`{f['name']}` ({f['description']}, {f['minimum']:g}–{f['maximum']:g})"
            for f in data["features"]) + ".",
        f"- Data validation (Great Expectations): {card['data_validation']['summary']}",
        "",
        "### Drift baseline",
        "",
        f"`mlops drift` compares logged requests with this training data: a column drifts "
        f"when its PSI exceeds {card['drift_baseline']['psi_threshold']} and a KS test "
        f"rejects at {card['drift_baseline']['ks_alpha']} (at least "
        f"{card['drift_baseline']['min_rows']} logged rows).",
        "",
        "| column | mean | std | 5% | 50% | 95% |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, stats in card["drift_baseline"]["columns"].items():
        lines.append(f"| {name} | " + " | ".join(
            _number(stats[k]) for k in ("mean", "std", "p5", "p50", "p95")) + " |")
    lines += [
        "",
        "### Training",
        "",
        f"- Parameters: `{json.dumps(training['params'], sort_keys=True)}`",
        f"- Git commit `{training['git_commit']}`"
        f"{' (uncommitted changes)' if training['git_dirty'] else ''}; MLflow run "
        f"`{training['run_id']}`; model package `{training['package']}`.",
        "",
        "### Known limitations",
        "",
        *([f"- {item}" for item in card["limitations"]] or ["- none stated by the spec"]),
        "",
    ]
    return "\n".join(lines)


def _class_lines(classes: dict[str, Any] | None) -> list[str]:
    """A classifier's table of figures per class on the holdout."""
    if not classes:
        return []
    threshold = classes.get("threshold")
    rule = ("the most probable class" if threshold is None else
            f"the last class where its probability is at least {threshold:g}")
    lines = ["", "### By class (holdout)", "", f"Labels are {rule}.", "",
             "| class | support | predicted | precision | recall | F1 |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in classes["per_class"]:
        lines.append(f"| {row['class']} | {row['support']} | {row['predicted']} | "
                     f"{_number(row['precision'])} | {_number(row['recall'])} | "
                     f"{_number(row['f1'])} |")
    return lines


def _set_markdown(card: dict[str, Any]) -> str:
    model, gate, evaluation = card["model"], card["gate"], card["evaluation"]
    data, training = card["data"], card["training"]
    counts = ", ".join(f"{n} {k}" for k, n in sorted(gate["counts"].items()))
    lines = [
        f"## Model card: {model['name']} version {model['version']} (many models)",
        "",
        f"**Intended use.** {model['description'] or 'not stated by the spec'} One model "
        f"per partition of {', '.join(f'`{k}`' for k in model['partition_keys'])}; "
        f"served prediction: `{model['output']}`.",
        "",
        f"**Set rule.** {gate['rule']} → alias `champion` "
        f"{'moved to this version' if gate['champion'] else 'unchanged'}.",
        f"Partitions: {counts}.",
        "",
        f"### Holdout metrics over the {data['models']} partition models",
        "",
        "| metric | worst | 10% | median | 90% | better when |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, stats in evaluation["metrics"].items():
        direction = "higher" if name in evaluation["higher_is_better"] else "lower"
        lines.append(f"| {name} | " + " | ".join(
            _number(stats[k]) for k in ("worst", "p10", "median", "p90")) + f" | {direction} |")
    problems = card["data_validation"]["problems"]
    lines += [
        "",
        "### Data",
        "",
        f"- {data['partitions']} partitions, {data['rows']} rows behind the "
        f"{data['models']} models (contract `{data['contract']}`).",
        f"- Data validation: {len(problems)} partition problem(s)"
        + (": " + "; ".join(problems) if problems else "."),
        "",
        "### Training",
        "",
        f"- Parameters: `{json.dumps(training['params'], sort_keys=True)}`; engine "
        f"{training['engine']}.",
        f"- Git commit `{training['git_commit']}`; MLflow run `{training['run_id']}`; model "
        f"package `{training['package']}`.",
        "",
        "### Known limitations",
        "",
        *([f"- {item}" for item in card["limitations"]] or ["- none stated by the spec"]),
        "",
    ]
    return "\n".join(lines)
