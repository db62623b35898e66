"""Data contract: eight cell-nucleus measurements and the diagnosis (1 = benign)."""

from __future__ import annotations

from ml_service.contract import DataContract, Feature

#: The dataset's column names, and the contract's (snake case) for them.
SOURCE_COLUMNS = {
    "mean radius": "radius",
    "mean texture": "texture",
    "mean perimeter": "perimeter",
    "mean area": "area",
    "mean smoothness": "smoothness",
    "mean compactness": "compactness",
    "mean concavity": "concavity",
    "mean symmetry": "symmetry",
    "target": "benign",
}

CONTRACT = DataContract(
    name="breast_cancer",
    features=(
        Feature("radius", "mean distance from center to perimeter, micrometres", 0, 60, (12, 16)),
        Feature("texture", "standard deviation of grey-scale values", 0, 80, (16, 22)),
        Feature("perimeter", "nucleus perimeter, micrometres", 0, 400, (80, 105)),
        Feature("area", "nucleus area, square micrometres", 0, 6000, (550, 760)),
        Feature("smoothness", "local variation in radius lengths", 0, 0.5, (0.085, 0.11)),
        Feature("compactness", "perimeter^2 / area - 1.0", 0, 1, (0.08, 0.13)),
        Feature("concavity", "severity of concave portions of the contour", 0, 1, (0.06, 0.12)),
        Feature("symmetry", "symmetry of the nucleus", 0, 1, (0.16, 0.2)),
    ),
    target=Feature("benign", "diagnosis: 1 benign, 0 malignant", 0, 1, (0.5, 0.75),
                   allowed_values=(0.0, 1.0)),
    min_rows=100,
)
