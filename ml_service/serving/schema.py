"""The /score request's OpenAPI schema, from the data contract (what ``/docs`` shows)."""

from __future__ import annotations

from typing import Any

from ml_service.contract import DataContract


def score_request_schema(contract: DataContract, example: list[list[float]]) -> dict[str, Any]:
    """The OpenAPI schema of a /score request body, derived from the data contract."""
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
