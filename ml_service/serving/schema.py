"""The /score request's and answer's OpenAPI schemas, from the bundle (what ``/docs`` shows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ml_service.classification import label_text
from ml_service.contract import DataContract

if TYPE_CHECKING:
    from ml_service.bundle import BundleMetadata


def score_response_schema(metadata: BundleMetadata) -> dict[str, Any]:
    """The OpenAPI schema of a 200 answer of /score for this bundle's model.

    Every answer has ``result`` (one number per row), ``model`` and
    ``request_id``; a classifier's also ``labels`` and ``probabilities``.
    """
    classes = metadata.classes
    multiclass = len(classes) > 2
    result = ("the predicted class of each row" if multiclass
              else "each row's probability of class " + label_text(classes[-1]) if classes
              else "the prediction for each row")
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["result", "model", "request_id"],
        "properties": {
            "result": {"type": "array", "items": {"type": "number"}, "description": result},
            "model": {
                "type": "object",
                "required": ["name", "version"],
                "properties": {"name": {"type": "string"}, "version": {"type": "integer"},
                               "partition": {"type": "string"},
                               "source_version": {"type": "integer"}},
            },
            "request_id": {"type": "string",
                           "description": "the X-Request-Id given, or one made for it"},
        },
    }
    if classes:
        names = [label_text(c) for c in classes]
        decided = ("the most probable class" if multiclass else
                   f"{names[-1]} where its probability is at least {metadata.threshold:g}, "
                   f"else {names[0]}")
        schema["required"] += ["labels", "probabilities"]
        schema["properties"]["labels"] = {
            "type": "array", "description": f"each row's class: {decided}",
            "items": {"type": "number", "enum": [float(c) for c in classes]}}
        schema["properties"]["probabilities"] = {
            "type": "array", "description": "each row's probability of every class",
            "items": {"type": "object", "required": names, "additionalProperties": False,
                      "properties": {n: {"type": "number", "minimum": 0, "maximum": 1}
                                     for n in names}}}
    return schema


def score_request_schema(contract: DataContract, example: list[list[float]],
                         partition_keys: list[str] | None = None,
                         example_partition: dict[str, Any] | None = None) -> dict[str, Any]:
    """The OpenAPI schema of a /score request body, derived from the data contract.

    For a many-models set (``partition_keys``) the body also names its partition.
    """
    schema = _rows_schema(contract, example)
    if partition_keys:
        schema["required"] = ["partition", "data"]
        schema["properties"]["partition"] = {
            "type": "object",
            "required": list(partition_keys),
            "additionalProperties": False,
            "properties": {k: {"type": ["number", "string"]} for k in partition_keys},
            "description": "which partition's model scores the rows",
        }
        schema["example"] = {"partition": example_partition or {}, **schema["example"]}
    return schema


def _rows_schema(contract: DataContract, example: list[list[float]]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "oneOf": [
                        {
                            "type": "array",
                            "items": {"type": "number"},
                            "minItems": len(contract.features),
                            "maxItems": len(contract.features),
                            "description": "values in order: " + ", ".join(contract.feature_names),
                        },
                        {
                            "type": "object",
                            "required": contract.feature_names,
                            "additionalProperties": False,
                            "properties": {
                                f.name: {
                                    "type": "number",
                                    "minimum": f.minimum,
                                    "maximum": f.maximum,
                                    "description": f.description,
                                }
                                for f in contract.features
                            },
                        },
                    ]
                },
            }
        },
        "example": {"data": example[:1]},
    }
