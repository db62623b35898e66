"""Reading a /score request: media type, body size and row count, before any parsing."""

from __future__ import annotations

from fastapi import Request

from ml_service.serving.validation import RequestError

# nginx's code for "client closed the request": counted, never a 5xx.
CLIENT_CLOSED = 499


def check_json(request: Request) -> None:
    """Only JSON is scored: a form or text body (a cross-site form post) is 415.

    A request with no Content-Type at all is read as JSON: browsers always
    label what they send, so that is not the cross-site case.
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media != "application/json" and not (media.startswith("application/")
                                                      and media.endswith("+json")):
        raise RequestError(f"Content-Type must be application/json, got {media or 'none'}",
                           status=415)


async def read_body(request: Request, limit: int) -> bytes:
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"request body of {declared} bytes exceeds {limit}", status=413)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"request body exceeds {limit} bytes", status=413)
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError("the client closed the connection before its body arrived",
                           status=CLIENT_CLOSED) from None
    return b"".join(chunks)


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
