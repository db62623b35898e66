"""The API keys of a deployed stage: kept with the stage, given to its service as a file.

A stage's keys live where the stage runs: a Kubernetes Secret in its
namespace, or a volume on its Docker engine. The service reads them from the
file they are mounted as (``MLOPS_API_KEYS_FILE``) and re-reads it when it
changes, so keys rotate without a redeploy (:mod:`ml_service.serving.auth`).

What a release puts there:

- the deployer's ``MLOPS_API_KEYS`` (and/or ``MLOPS_API_KEYS_FILE``) when set:
  in GitHub Actions the environment secret ``SCORING_API_KEYS`` of the
  stage's environment;
- else the keys the stage already has;
- else one new random key, made here (read it with ``mlops api-keys --stage
  STAGE --reveal``).

So a stage is never deployed open. The release's smoke test scores with the
first key and checks that a request without one is refused.

A release that changes the keys never locks clients out on the way
(:func:`transition`): while it deploys, the stage accepts its old keys and
the new ones; only once the new instance passed its smoke test are the old
keys dropped, and a release that fails puts the old keys back.
"""

from __future__ import annotations

import logging

from ml_service.serving.auth import describe, key_id, new_key, parse_keys
from ml_service.settings import Settings

logger = logging.getLogger(__name__)

#: Where the keys are mounted in a stage's container, and the file's name there.
MOUNT = "/etc/scoring/keys"
FILE = "api-keys"
#: The Kubernetes Secret holding a stage's keys (data key :data:`FILE`).
SECRET = "scoring-api-keys"


def wanted(settings: Settings) -> list[str]:
    """The keys the deployer was given for its stages (may be empty)."""
    keys = []
    if settings.api_keys is not None:
        keys += parse_keys(settings.api_keys.get_secret_value(), "MLOPS_API_KEYS")
    if settings.api_keys_file is not None:
        keys += parse_keys(settings.api_keys_file.read_text(),
                           f"MLOPS_API_KEYS_FILE={settings.api_keys_file}")
    return list(dict.fromkeys(keys))


def transition(stage: str, stored: list[str], given: list[str]) -> tuple[list[str], list[str]]:
    """(the keys while the release deploys, the keys once it passed) for the stage.

    While it deploys: the keys it will have, then any old key still accepted
    (the instance being replaced keeps its clients; a release that fails
    writes back ``stored``). The first key is what the smoke test sends.
    """
    after, _ = settle(stage, stored, given)
    during = list(dict.fromkeys([*after, *stored]))
    return during, after


def settle(stage: str, stored: list[str], given: list[str]) -> tuple[list[str], bool]:
    """(the keys the stage gets, whether its store must be written).

    The deployer's keys win; else the stage keeps its own; else it gets a new one.
    """
    if given:
        if given != stored:
            added = [key_id(k) for k in given if k not in stored]
            dropped = [key_id(k) for k in stored if k not in given]
            # A key removed by rotation (`mlops api-keys --set`) that is still in the
            # deployer's MLOPS_API_KEYS comes back here: say which, loudly.
            logger.warning("%s: /score keys set to the deployer's MLOPS_API_KEYS (%s)%s%s",
                           stage, describe(map(key_id, given)),
                           f"; adds {describe(added)}" if added and stored else "",
                           f"; drops {describe(dropped)}" if dropped else "")
        return given, given != stored
    if stored:
        return stored, False
    made = [new_key()]
    logger.warning("%s had no /score key and none was given (MLOPS_API_KEYS): made %s; read "
                   "it with `mlops api-keys --stage %s --reveal`", stage, describe(
                       map(key_id, made)), stage)
    return made, True


def file_text(keys: list[str]) -> str:
    """The key file: one key per line, after a comment that names their ids."""
    return (f"# /score API keys ({describe(map(key_id, keys))}); written by `mlops release`"
            " / `mlops api-keys`\n" + "".join(f"{k}\n" for k in keys))


def parse_stored(text: str, where: str) -> list[str]:
    """The keys of a stage's stored key file."""
    return parse_keys(text, where)
