"""The /score request's OpenAPI schema, from the data contract (what ``/docs`` shows)."""

from __future__ import annotations

from typing import Any

from ml_service.contract import DataContract


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
