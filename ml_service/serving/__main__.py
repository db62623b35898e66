"""``python -m ml_service.serving``: the scoring image's command."""

from __future__ import annotations

import logging

from ml_service.serving import http_server
from ml_service.serving.app import ModelIntegrityError, create_app
from ml_service.serving.auth import ApiKeyError
from ml_service.settings import Settings
from ml_service.signing import SignatureError

logger = logging.getLogger("ml_service.serving")


def main() -> None:
    """Run the service with uvicorn on ``MLOPS_SERVE_HOST:MLOPS_SERVE_PORT``."""
    settings = Settings()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
    except (ModelIntegrityError, SignatureError, ApiKeyError, FileNotFoundError,
            RuntimeError) as exc:
        # A tampered, unsigned or incomplete bundle, a runtime the bundle or the image
        # lacks, a model card of another version, no API keys on an open port: one
        # line, exit code 3.
        logger.error("cannot start: %s", exc)
        raise SystemExit(3) from None
    http_server.run(app, settings.serve_host, settings.serve_port,
                    request_timeout=settings.request_timeout,
                    keep_alive=settings.keep_alive_timeout)


if __name__ == "__main__":
    main()
