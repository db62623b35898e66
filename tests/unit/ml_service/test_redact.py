"""Credentials never printed: URIs and error texts (ml_service.redact)."""

from __future__ import annotations

import pytest

from ml_service.redact import redact_text, redact_uri


@pytest.mark.parametrize("uri, shown", [
    ("http://alice:s3cret@mlflow.example:5000/", "http://***@mlflow.example:5000/"),
    ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
    ("https://acct.blob.core.windows.net/logs?sv=2024-01-01&sig=abc%2Bdef&se=x",
     "https://acct.blob.core.windows.net/logs?sv=2024-01-01&sig=***&se=x"),
    ("s3://bucket/p?X-Amz-Signature=f00&X-Amz-Credential=AK", "s3://bucket/p?X-Amz-Signature=***"
     "&X-Amz-Credential=***"),
    ("http://mlflow.example:5000", "http://mlflow.example:5000"),
    ("sqlite:////tmp/store/mlflow.db", "sqlite:////tmp/store/mlflow.db"),
    ("", ""),
])
def test_uris_lose_their_credentials_and_nothing_else(uri, shown):
    assert redact_uri(uri) == shown


def test_error_texts_lose_every_credential_they_quote():
    text = ("(psycopg2.OperationalError) connection to postgresql://mlflow:hunter22@db/mlflow "
            "failed; retried https://u:p4ss@host/x?sig=SIGVALUE&sv=1 with "
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=KEYVALUE==;")
    redacted = redact_text(text, "extra-secret")
    for secret in ("hunter22", "p4ss", "SIGVALUE", "KEYVALUE", "mlflow:"):
        assert secret not in redacted
    assert "postgresql://***@db/mlflow" in redacted and "sv=1" in redacted
    assert redact_text("token extra-secret here", "extra-secret") == "token *** here"
