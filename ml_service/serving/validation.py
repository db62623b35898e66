"""Request validation for the scoring service, derived from the data contract.

A request's rows are checked with the same names and physical ranges as the
training data, so the service never passes the model a value the contract
rejects. Every problem is reported with its row and feature.

Three paths give the same answers. The flat one covers the most common
request, ``{"data": [[numbers], ...]}`` for a single model: simdjson parses
the body and copies every number into one float64 buffer (C++, no Python
object per value), a scan of the body's bytes proves the rows are lists of
exactly the contract's width, and numpy checks the ranges. The fast one
covers list rows with anything else (a many-models set's partition): msgspec
decodes it into lists of floats. Anything neither accepts (records, a wrong
type or width, a value out of range, a body that is not JSON) goes to the
precise path, which parses with the standard library and finds the first
offending row and feature: the error message is computed only when there is
an error.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import simdjson

from ml_service.contract import DataContract

_JSON_TYPE = {
    str: "a string", bool: "a boolean", type(None): "null", list: "a list", dict: "an object"
}


class RequestError(ValueError):
    """A request the contract rejects (HTTP 422, or 413 when too large).

    Attributes:
        row: Index of the offending row, if one.
        feature: Name of the offending feature, if one.
        status: HTTP status to answer with.
    """

    def __init__(self, message: str, row: int | None = None, feature: str | None = None,
                 status: int = 422):
        super().__init__(message)
        self.row, self.feature, self.status = row, feature, status

    def as_json(self) -> dict[str, Any]:
        """The error body: ``detail`` for people, ``row``/``feature`` for programs."""
        return {"detail": str(self), "row": self.row, "feature": self.feature}


class FastRows(msgspec.Struct):
    """The common /score body: rows as lists of numbers, and a set's partition."""

    data: list[list[float]]
    partition: dict[str, str | int | float] | None = None


_FAST = msgspec.json.Decoder(FastRows)
#: Every byte but the brackets and commas that give a list of lists its shape.
_NOT_SHAPE = bytes(c for c in range(256) if c not in b"[],")
#: Rows of bounds RowValidator compares at a time (320 KB for ten features).
_TILE_ROWS = 2048
#: Up to this many rows, the values are checked in Python, not numpy.
_FEW_ROWS = 4


class RowValidator:
    """Turns the ``data`` of a /score request into a float matrix, or raises RequestError.

    Rows are either lists of values in contract order or objects keyed by
    feature name; both kinds may be mixed in one request.
    """

    def __init__(self, contract: DataContract, max_rows: int):
        self.names = contract.feature_names
        self.width = len(self.names)
        self.max_rows = max_rows
        self.minimum = np.array([f.minimum for f in contract.features])
        self.maximum = np.array([f.maximum for f in contract.features])
        self._row_shape = b"[" + b"," * (self.width - 1) + b"]"
        self.allowed = {
            j: np.array(f.allowed_values)
            for j, f in enumerate(contract.features)
            if f.allowed_values is not None
        }
        # The bounds repeated for _TILE_ROWS rows: a whole matrix is then
        # compared with them element by element, 3-4x cheaper than numpy's
        # broadcast of one row of bounds against every row.
        self._low = np.tile(self.minimum, _TILE_ROWS)
        self._high = np.tile(self.maximum, _TILE_ROWS)
        self._bounds_low, self._bounds_high = self.minimum.tolist(), self.maximum.tolist()
        self._codes = [(j, frozenset(codes.tolist())) for j, codes in self.allowed.items()]

    def flat(self, body: bytes) -> np.ndarray | None:
        """The matrix of a valid ``{"data": [[numbers], ...]}`` body; None for the other paths.

        Raises:
            RequestError: 413 if the body holds more rows than allowed.
        """
        try:
            document = simdjson.Parser().parse(body)  # a parser per call: thread-safe
            if not isinstance(document, simdjson.Object) or list(document.keys()) != ["data"]:
                return None
            data = document["data"]
            if not isinstance(data, simdjson.Array):
                return None
            rows = len(data)
            values = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
        except (ValueError, TypeError, RuntimeError, KeyError):  # not JSON, not numbers
            return None
        if rows > self.max_rows:
            raise RequestError(f"too many rows: {rows} > {self.max_rows} per request",
                               status=413)
        if rows == 0 or len(values) != rows * self.width or not self._rows_of_width(body, rows):
            return None
        matrix = values.reshape(rows, self.width)
        return matrix if self._valid(matrix) else None

    def _rows_of_width(self, body: bytes, rows: int) -> bool:
        """Whether ``data`` is ``rows`` flat lists of ``width`` values each.

        Called once simdjson has read the body as valid JSON whose only key is
        ``data`` and whose leaves under it are numbers: no string can then
        hold a bracket or comma, and the envelope has none, so the body's
        brackets and commas, in order, are the shape of ``data``. It must be
        exactly ``[[,,,],[,,,],...]``: no deeper list, no number between rows,
        ``width - 1`` commas in each row.
        """
        row = self._row_shape
        return body.translate(None, _NOT_SHAPE) == b"[" + (row + b",") * (rows - 1) + row + b"]"

    def fast(self, body: bytes) -> tuple[np.ndarray, dict[str, Any] | None] | None:
        """The matrix and partition of a valid body of list rows; None for the precise path."""
        try:
            parsed = _FAST.decode(body)
        except msgspec.MsgspecError:
            return None
        if not parsed.data or len(parsed.data) > self.max_rows:
            return None
        try:
            matrix = np.array(parsed.data, dtype=np.float64)
        except ValueError:  # rows of different lengths
            return None
        if matrix.shape != (len(parsed.data), self.width) or not self._valid(matrix):
            return None
        return matrix, parsed.partition

    def __call__(self, data: Any) -> np.ndarray:
        """Validate ``data`` and return an (n_rows, n_features) float64 array."""
        if not isinstance(data, list):
            raise RequestError(f"'data' must be a list of rows, got {_kind(data)}")
        if not data:
            raise RequestError("'data' is empty: send at least one row")
        if len(data) > self.max_rows:
            raise RequestError(
                f"too many rows: {len(data)} > {self.max_rows} per request", status=413
            )
        rows = [self._row(i, row) for i, row in enumerate(data)]
        try:
            matrix = np.array(rows, dtype=np.float64)
        except OverflowError:
            self._find_overflow(rows)
            raise
        self._check_values(matrix)
        return matrix

    def _row(self, i: int, row: Any) -> list[Any]:
        if type(row) is dict:
            unknown = [key for key in row if key not in self.names]
            if unknown:
                raise RequestError(f"row {i}: unknown feature '{unknown[0]}'", i, str(unknown[0]))
            missing = [name for name in self.names if name not in row]
            if missing:
                raise RequestError(f"row {i}: missing feature '{missing[0]}'", i, missing[0])
            values = [row[name] for name in self.names]
        elif type(row) is list:
            if len(row) != self.width:
                raise RequestError(
                    f"row {i}: expected {self.width} values ({', '.join(self.names)}), "
                    f"got {len(row)}",
                    i,
                )
            values = row
        else:
            raise RequestError(
                f"row {i}: expected a list of {self.width} numbers or an object, got {_kind(row)}",
                i,
            )
        for j, value in enumerate(values):
            kind = type(value)
            if kind is not float and kind is not int:
                raise RequestError(
                    f"row {i}, feature '{self.names[j]}': expected a number, got {_kind(value)}",
                    i,
                    self.names[j],
                )
        return values

    def _find_overflow(self, rows: list[Any]) -> None:
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                try:
                    float(value)
                except OverflowError:
                    raise RequestError(
                        f"row {i}, feature '{self.names[j]}': number too large", i, self.names[j]
                    ) from None

    def _valid(self, matrix: np.ndarray) -> bool:
        """Whether every value is finite, within its range and, where listed, allowed.

        The answer of ``not self._bad(matrix).any()`` for a C-contiguous
        matrix, computed without the per-value mask: the flat values against
        the tiled bounds, then each allowed-values column against its codes.
        """
        if matrix.shape[0] <= _FEW_ROWS:  # numpy's per-call cost is more than the work
            return all(self._row_ok(row) for row in matrix.tolist())
        values, step = matrix.reshape(-1), self._low.size
        for start in range(0, values.size, step):
            part = values[start:start + step]
            size = part.size
            if not ((part >= self._low[:size]) & (part <= self._high[:size])).all():
                return False
        for j, allowed in self.allowed.items():
            column = matrix[:, j]
            ok = np.zeros(column.shape, dtype=bool)
            for code in allowed:
                ok |= column == code
            if not ok.all():
                return False
        return True

    def _row_ok(self, row: list[float]) -> bool:
        """:meth:`_valid` for one row, in Python (NaN fails both comparisons)."""
        for value, low, high in zip(row, self._bounds_low, self._bounds_high, strict=True):
            if not low <= value <= high:
                return False
        return all(row[j] in codes for j, codes in self._codes)

    def _bad(self, matrix: np.ndarray) -> np.ndarray:
        """True where a value is not finite, outside its range or not an allowed value.

        NaN fails both comparisons and infinities fail one, so the range check
        also rejects what is not finite. An allowed-values column (a handful of
        codes) is compared with each code at once, cheaper than ``np.isin`` on
        small requests.
        """
        bad: np.ndarray = ~((matrix >= self.minimum) & (matrix <= self.maximum))
        for j, allowed in self.allowed.items():
            bad[:, j] |= ~(matrix[:, j, None] == allowed).any(axis=1)
        return bad

    def _check_values(self, matrix: np.ndarray) -> None:
        finite = np.isfinite(matrix)
        bad = self._bad(matrix)
        if not bad.any():
            return
        i, j = (int(k) for k in np.argwhere(bad)[0])
        name, value = self.names[j], matrix[i, j]
        if not finite[i, j]:
            reason = f"{value} is not a finite number"
        elif j in self.allowed and self.minimum[j] <= value <= self.maximum[j]:
            reason = f"{value:g} is not one of {[float(v) for v in self.allowed[j]]}"
        else:
            reason = f"{value:g} is outside [{self.minimum[j]:g}, {self.maximum[j]:g}]"
        raise RequestError(f"row {i}, feature '{name}': {reason}", i, name)


def _kind(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return _JSON_TYPE.get(type(value), type(value).__name__)
