"""Checking a /score request before any parsing: media type and row count."""

from __future__ import annotations

from ml_service.serving.validation import RequestError

# nginx's code for "client closed the request": counted, never a 5xx.
CLIENT_CLOSED = 499


def media_type(content_type: str) -> None:
    """Only JSON is scored: a form or text body (a cross-site form post) is 415.

    So is a request with no Content-Type at all: a cross-site ``fetch`` in
    ``no-cors`` mode can send a body without one (a Blob or ArrayBuffer), and
    it must not be read as JSON either.
    """
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/")
                                            and media.endswith("+json")):
        raise RequestError(f"Content-Type must be application/json, got {media or 'none'}",
                           status=415)


def check_row_count(body: bytes, max_rows: int) -> None:
    """413 before parsing when the body holds more rows than allowed.

    Rows are lists or objects of numbers, so a body with at most ``max_rows``
    rows has at most ``max_rows + 1`` pairs of each kind of bracket; counting
    them is a C loop, where parsing a body of a million empty rows takes a
    second. (Unbalanced junk such as ``[[[[...`` is left to the parser: 422.)
    """
    rows = max(min(body.count(b"["), body.count(b"]")),
               min(body.count(b"{"), body.count(b"}"))) - 1
    if rows > max_rows:
        raise RequestError(f"too many rows: {rows} > {max_rows} per request (counted before "
                           "parsing)", status=413)


def reject_constant(name: str) -> None:
    raise RequestError(f"{name} is not a valid JSON number")
