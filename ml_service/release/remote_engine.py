"""A Docker engine on another host, reached over SSH from a CI job.

The Docker SDK (with paramiko, ``docker[ssh]``) opens ``DOCKER_HOST=ssh://...``
itself; what a fresh CI runner lacks is the key and the host's public key.
They arrive as secrets (``DOCKER_SSH_KEY``, ``DOCKER_SSH_KNOWN_HOSTS``) and are
installed here: the key to its own file, the host key into ``known_hosts``
(the SDK rejects unknown hosts; nothing is trusted on first use), and a
``Host`` block in ``~/.ssh/config`` that ties the key to that host.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from ml_service.errors import UsageError

logger = logging.getLogger(__name__)

BEGIN, END = "# >>> mlops remote-engine {host}", "# <<< mlops remote-engine {host}"


def ssh_target(docker_host: str | None) -> tuple[str, int] | None:
    """(host, port) of an ``ssh://`` DOCKER_HOST, or None for any other engine."""
    if not docker_host or urlsplit(docker_host).scheme != "ssh":
        return None
    parts = urlsplit(docker_host)
    if not parts.hostname:
        raise UsageError(f"DOCKER_HOST={docker_host} names no host (ssh://user@host[:port])")
    return parts.hostname, parts.port or 22


def install_identity(docker_host: str | None, key: str | None, known_hosts: str | None,
                     ssh_dir: Path, key_dir: Path | None = None) -> str:
    """Install the SSH key and known host for an ``ssh://`` DOCKER_HOST.

    Args:
        docker_host: The DOCKER_HOST in effect.
        key: The private key (OpenSSH or PEM text).
        known_hosts: known_hosts line(s) for the host, e.g. ``ssh-keyscan`` output
            checked out of band.
        ssh_dir: Usually ``~/.ssh``: the host key and the ``Host`` block (the
            Docker SDK reads only ``~/.ssh/config`` and ``known_hosts``).
        key_dir: Where the private key goes (default ``ssh_dir``); in Actions
            the job's ``$RUNNER_TEMP``, which the runner empties after the job,
            so no key stays in a self-hosted runner's home.

    Returns:
        A sentence saying what was installed, or why nothing was needed.

    Raises:
        UsageError: If the key or host key is missing, unreadable, or not for that host.
    """
    import paramiko

    target = ssh_target(docker_host)
    if target is None:
        return "DOCKER_HOST is not an ssh:// engine: no SSH identity to install"
    host, port = target
    if not key or not key.strip():
        raise UsageError(
            f"DOCKER_HOST is {docker_host} but DOCKER_SSH_KEY is empty: add the private key "
            "of a user allowed to use Docker on that host as the environment's secret"
        )
    if not known_hosts or not known_hosts.strip():
        raise UsageError(
            f"DOCKER_SSH_KNOWN_HOSTS is empty: add the host key of {host} as a secret "
            f"(`ssh-keyscan -p {port} {host}`, checked against the host itself); an unknown "
            "host key is never trusted on first use"
        )
    entry = host if port == 22 else f"[{host}]:{port}"
    host_keys = paramiko.HostKeys()
    for line in _normalise(known_hosts).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            parsed = paramiko.hostkeys.HostKeyEntry.from_line(line)
            if parsed is not None:
                for name in parsed.hostnames:
                    host_keys.add(name, parsed.key.get_name(), parsed.key)
    if host_keys.lookup(entry) is None:
        raise UsageError(f"DOCKER_SSH_KNOWN_HOSTS has no key for {entry}")

    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_dir = key_dir or ssh_dir
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9.-]", "_", host)
    key_file = key_dir / f"mlops-docker-{safe}"
    _write_private(key_file, _normalise(key))
    try:
        paramiko.PKey.from_path(key_file)
    except (paramiko.SSHException, ValueError, OSError) as exc:
        key_file.unlink()
        raise UsageError(f"DOCKER_SSH_KEY is not a usable private key ({exc})") from None
    _merge_known_hosts(ssh_dir / "known_hosts", _normalise(known_hosts))
    _set_config_block(ssh_dir / "config", host, key_file)
    return f"installed the SSH identity for {entry} ({key_file}) and its host key"


def _normalise(text: str) -> str:
    # Secrets pasted through a browser may carry CRLF or lose the final newline.
    return text.replace("\r\n", "\n").strip() + "\n"


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def _merge_known_hosts(path: Path, lines: str) -> None:
    existing = path.read_text().splitlines() if path.exists() else []
    merged = existing + [line for line in lines.splitlines() if line not in existing]
    _write_private(path, "\n".join(merged) + "\n")


def _set_config_block(path: Path, host: str, key_file: Path) -> None:
    begin, end = BEGIN.format(host=host), END.format(host=host)
    text = path.read_text() if path.exists() else ""
    text = re.sub(rf"{re.escape(begin)}\n.*?{re.escape(end)}\n", "", text, flags=re.S)
    block = f"{begin}\nHost {host}\n    IdentityFile {key_file}\n    IdentitiesOnly yes\n{end}\n"
    _write_private(path, block + text)
