"""Credentials out of anything printed: URIs and the error texts that quote them.

``MLFLOW_TRACKING_URI`` may carry ``user:password@`` (basic auth, a database
URL) and a storage URI a SAS token (``?sv=...&sig=...``). Whatever the CLI
prints, writes to a summary or puts in an error message goes through
:func:`redact_uri` or :func:`redact_text` first.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HIDDEN = "***"
#: Query parameters that are secrets (Azure SAS, S3 presigned URLs, tokens, keys).
SECRET_PARAMETERS = re.compile(
    r"^(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|token|"
    r"access_token|password|passwd|pwd|secret|key|accountkey|api[-_]?key|sas)$", re.I)


def redact_uri(uri: str | None) -> str:
    """``uri`` with its user, password and secret query parameters replaced by ``***``."""
    if not uri:
        return uri or ""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return HIDDEN
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secret_query = any(SECRET_PARAMETERS.match(k) for k, _ in pairs)
    if "@" not in parts.netloc and not secret_query:
        return uri  # nothing to hide: unchanged (urlunsplit would drop sqlite:////'s slashes)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if secret_query:
        query = urlencode([(k, HIDDEN if SECRET_PARAMETERS.match(k) else v) for k, v in pairs],
                          safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@", re.I)
_SECRET_QUERY = re.compile(r"(?P<name>[?&;](?:" + SECRET_PARAMETERS.pattern[2:-2] + r")=)"
                           r"(?P<value>[^&\s'\"]+)", re.I)
_CONNECTION_STRING = re.compile(r"(?P<name>(?:AccountKey|SharedAccessSignature|Password)=)"
                                r"(?P<value>[^;\s'\"]+)", re.I)


def redact_text(text: str, *secrets: str | None) -> str:
    """``text`` with every URI's credentials, and each of ``secrets``, replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, HIDDEN)
    text = _CREDENTIALS.sub(lambda m: f"{m['scheme']}{HIDDEN}@", text)
    text = _SECRET_QUERY.sub(lambda m: f"{m['name']}{HIDDEN}", text)
    return _CONNECTION_STRING.sub(lambda m: f"{m['name']}{HIDDEN}", text)
