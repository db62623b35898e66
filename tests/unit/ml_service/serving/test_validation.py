"""The three request paths agree: what the flat or fast path accepts, the precise path
accepts as the same matrix; what they refuse, the precise path names."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from diabetes_regression.schema import CONTRACT
from ml_service.serving.validation import RequestError, RowValidator

ROW = [59.0, 2.0, 32.1, 101.0, 157.0, 93.2, 38.0, 4.0, 4.8598, 87.0]
VALIDATOR = RowValidator(CONTRACT, max_rows=1000)


def precise(body: bytes) -> np.ndarray | None:
    """The matrix the standard library's path makes of ``body``, or None if it refuses it."""
    try:
        payload = json.loads(body)
        return VALIDATOR(payload["data"]) if isinstance(payload, dict) else None
    except (RequestError, ValueError, KeyError, TypeError, RecursionError):
        return None


def assert_agree(body: bytes) -> None:
    for path in (VALIDATOR.flat, lambda b: (VALIDATOR.fast(b) or (None,))[0]):
        try:
            got = path(body)
        except RequestError as exc:  # only for too many rows
            assert exc.status == 413
            continue
        if got is not None:
            expected = precise(body)
            assert expected is not None, body[:200]
            np.testing.assert_array_equal(got, expected)


def _value(feature):
    if feature.allowed_values is not None:
        return st.sampled_from([float(v) for v in feature.allowed_values])
    return (st.floats(min_value=feature.minimum, max_value=feature.maximum)
            | st.integers(int(np.ceil(feature.minimum)), int(feature.maximum)))


valid_row = st.tuples(*(_value(f) for f in CONTRACT.features)).map(list)
numbers = (st.floats(min_value=0, max_value=400) | st.integers(0, 400)
           | st.floats(allow_nan=False) | st.integers(-(2**70), 2**70))
leaf = numbers | st.booleans() | st.none() | st.text(alphabet="[],\"{} a", max_size=4)
rows = st.lists(st.lists(numbers, min_size=9, max_size=11) | valid_row
                | st.recursive(leaf, lambda c: st.lists(c, max_size=3), max_leaves=6),
                max_size=30)


@hsettings(max_examples=400, deadline=None)
@given(data=rows, separators=st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]),
       extra=st.sampled_from(["", ', "x": 1', ', "data": 3', ', "partition": {"a": "[1,"}']))
def test_the_flat_and_fast_paths_accept_only_what_the_precise_path_accepts_alike(
        data, separators, extra):
    body = json.dumps({"data": data}, separators=separators)
    assert_agree((body[:-1] + extra + "}").encode())


@hsettings(max_examples=200, deadline=None)
@given(data=st.lists(valid_row, min_size=1, max_size=40),
       separators=st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
def test_valid_rows_take_the_flat_path_and_read_as_the_precise_path_reads_them(
        data, separators):
    body = json.dumps({"data": data}, separators=separators).encode()
    np.testing.assert_array_equal(VALIDATOR.flat(body), precise(body))


@pytest.mark.parametrize("body", [
    # 11 + 9 values: read as 20 in a row, two valid rows of ten
    json.dumps({"data": [ROW + ROW[:1], ROW[1:]]}).encode(),
    json.dumps({"data": [ROW[:9], ROW[9:] + ROW]}).encode(),
    # a list inside a row and a number beside it: commas as in two rows of ten
    json.dumps({"data": [ROW[:9] + [ROW[9:]] + ROW[:9], ROW[9]]}).encode(),
    b'{"data": [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, [87]]]}',  # a deeper list
    b'{"data": [59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]}',  # no rows at all
    b'{"data": [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]], "data": 3}',
    b'{"data": [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]} trailing',
    b'{"data": [[59, true, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]}',
    b'{"data": [[1e999, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]}',
    b'{"data": [[NaN, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]}',
    b'{"data": [[99999999999999999999999, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]}',
    b'{"data": []}',
    b'{"data": [[]]}',
])
def test_bodies_that_look_like_rows_but_are_not_leave_the_flat_path(body):
    assert VALIDATOR.flat(body) is None
    assert_agree(body)


def test_the_flat_path_reads_numbers_as_the_standard_library_does():
    body = (b'{"data": [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87],'
            b'[1.5e1, 1, 0.1, 1e2, 0.3e3, 1E2, -0, 4.000000000000001, 4.85980000000000001, 87]]}')
    np.testing.assert_array_equal(VALIDATOR.flat(body), precise(body))


def test_the_flat_path_counts_rows_itself_and_refuses_too_many():
    body = json.dumps({"data": [ROW] * 1001}).encode()
    with pytest.raises(RequestError, match="too many rows: 1001 > 1000") as caught:
        VALIDATOR.flat(body)
    assert caught.value.status == 413


@hsettings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1),
       count=st.sampled_from([1, 2, 4, 5, 7, 2047, 2048, 2049, 5000]),
       damage=st.sampled_from(["none", "low", "high", "nan", "inf", "code"]))
def test_the_whole_matrix_check_agrees_with_the_per_value_mask(seed, count, damage):
    """_valid (in Python for a few rows, else tiled bounds in chunks of rows) answers what
    the per-value mask answers, on both sides of each size and wherever one value is wrong."""
    rng = np.random.default_rng(seed)
    low, high = VALIDATOR.minimum, VALIDATOR.maximum
    matrix = low + rng.random((count, VALIDATOR.width)) * (high - low)
    for j, allowed in VALIDATOR.allowed.items():
        matrix[:, j] = rng.choice(allowed, count)
    i, j = int(rng.integers(count)), int(rng.integers(VALIDATOR.width))
    if damage == "code":
        j = next(iter(VALIDATOR.allowed))
        matrix[i, j] = VALIDATOR.allowed[j].mean()  # within range, not a code
    elif damage != "none":
        matrix[i, j] = {"low": low[j] - 1, "high": high[j] + 1, "nan": np.nan,
                        "inf": np.inf}[damage]
    assert VALIDATOR._valid(matrix) == (not VALIDATOR._bad(matrix).any())
    assert VALIDATOR._valid(matrix) == (damage == "none")
