"""Real servers the tests start on loopback ports: PostgreSQL and `mlflow server`."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ml_service.net import free_port  # noqa: F401 - re-exported for the tests


def wait_for_http(url: str, process: subprocess.Popen, deadline: float) -> bool:
    """Poll ``url`` until it answers 200; False if ``process`` exits or time runs out."""
    from ml_service.net import wait_for_http as wait

    try:
        wait(url, deadline, process)
        return True
    except (TimeoutError, ChildProcessError):
        return False


def unavailable(reason: str, required_by: str) -> None:
    """Skip with the reason, or fail when the environment variable says it is required."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{required_by}=1 but {reason}")
    pytest.skip(f"{reason} (set {required_by}=1 to make this a failure)")


def _pg_bin() -> Path | None:
    """The directory with initdb, pg_ctl and createdb (Debian keeps them off PATH)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class Postgres:
    """A throw-away PostgreSQL cluster (trust auth, loopback only)."""

    def __init__(self):
        bindir = _pg_bin()
        if bindir is None:
            unavailable("PostgreSQL is not installed (Debian package postgresql)",
                        "REQUIRE_POSTGRES")
        # Its own directory in the system temp dir: pytest's are private to the
        # test user, and as root the server runs as the postgres account
        # (PostgreSQL refuses to run as root).
        root = Path(tempfile.mkdtemp(prefix="mlops-postgres-"))
        self.bindir, self.root, self.port = bindir, root, free_port()
        self.data = root / "data"
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.prefix:
            shutil.chown(root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(root / "server.log"), "-w",
                  "-o", f"-p {self.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
                  "start")

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([*self.prefix, str(self.bindir / tool), *args],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.root / "server.log"
            extra = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed: {result.stderr[-2000:]}{extra}")

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its SQLAlchemy URI."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class MlflowServer:
    """`mlflow server` with the given backend store and proxied artifacts."""

    def __init__(self, root: Path, backend_uri: str, deadline: float = 120.0,
                 extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None):
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "mlflow-server.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "2", "--backend-store-uri", backend_uri,
             "--artifacts-destination", str(root / "artifacts"), *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=root, env={**os.environ, **(env or {})},
        )
        if not wait_for_http(f"{self.uri}/health", self.process, deadline):
            self.close()
            raise RuntimeError(f"mlflow server not healthy after {deadline:.0f}s:\n"
                               f"{self.log_path.read_text()[-3000:]}")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# Azurite's documented development account: public, for the emulator only.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


def _azurite_binary() -> str | None:
    from tests.conftest import REPO

    local = REPO / ".cache" / "tools" / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


class Azurite:
    """Microsoft's Azure Blob storage emulator (npm package azurite) on a loopback port.

    ``make test-deps`` installs it into .cache/tools.
    """

    def __init__(self, root: Path, deadline: float = 60.0):
        binary = _azurite_binary()
        if binary is None:
            unavailable("Azurite is not installed (`make test-deps`, npm package azurite)",
                        "REQUIRE_AZURITE")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.endpoint};"
        )
        self.log = (root / "azurite.log").open("w")
        self.process = subprocess.Popen(
            [binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
             "--location", str(root / "azurite"), "--skipApiVersionCheck", "--loose",
             "--silent"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        stop = time.monotonic() + deadline
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"azurite exited:\n{(root / 'azurite.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > stop:
                    self.close()
                    raise RuntimeError(f"azurite not listening after {deadline:.0f}s") from None
                time.sleep(0.2)

    def filesystem(self):
        """An adlfs filesystem on this emulator."""
        from adlfs import AzureBlobFileSystem

        return AzureBlobFileSystem(connection_string=self.connection_string,
                                   skip_instance_cache=True)

    def close(self) -> None:
        # It waits for idle keep-alive connections on SIGTERM; nothing to keep.
        self.process.kill()
        self.process.wait(timeout=20)
        self.log.close()


def ssh_keypair() -> tuple[str, str]:
    """A new ed25519 key: (OpenSSH private key text, public key line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public


class Sshd:
    """OpenSSH's server on a loopback address other than 127.0.0.1, key login only.

    It stands in for a lasting Docker host: ``DOCKER_HOST=ssh://user@<address>:<port>``
    reaches this machine's engine through it, and the containers' ports are
    published on ``address``, so a smoke test that went to 127.0.0.1 would miss.
    """

    def __init__(self, root: Path, address: str = "127.0.0.2", deadline: float = 30.0):
        binary = shutil.which("sshd") or "/usr/sbin/sshd"
        if not Path(binary).exists():
            unavailable("sshd is not installed (`make test-deps`, Debian package "
                        "openssh-server)", "REQUIRE_SSHD")
        import getpass

        self.address, self.port, self.user = address, free_port(), getpass.getuser()
        self.client_key, client_public = ssh_keypair()
        host_private, self.host_public = ssh_keypair()
        (root / "host_key").write_text(host_private)
        (root / "host_key").chmod(0o600)
        (root / "authorized_keys").write_text(client_public + "\n")
        (root / "sshd_config").write_text(
            f"ListenAddress {address}:{self.port}\n"
            f"HostKey {root / 'host_key'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
            f"PidFile {root / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
        self.log = (root / "sshd.log").open("w")
        self.process = subprocess.Popen([binary, "-D", "-e", "-f", str(root / "sshd_config")],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        stop = time.monotonic() + deadline
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited:\n{(root / 'sshd.log').read_text()}")
            try:
                with socket.create_connection((address, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > stop:
                    self.close()
                    raise RuntimeError("sshd not listening") from None
                time.sleep(0.2)

    @property
    def docker_host(self) -> str:
        return f"ssh://{self.user}@{self.address}:{self.port}"

    @property
    def known_hosts(self) -> str:
        return f"[{self.address}]:{self.port} {self.host_public}\n"

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def kubectl_binary() -> str | None:
    """The kubectl built with the local cluster (the server's version), else the one on PATH."""
    cache = Path(os.environ.get("MLOPS_CACHE_HOME", Path.home() / ".cache" / "mlops-template"))
    built = sorted(glob.glob(str(cache / "kubernetes" / "*" / "bin" / "kubectl")))
    return built[-1] if built else shutil.which("kubectl")


def _listening(port: int) -> bool:
    """Whether a socket of this machine listens on TCP ``port``, on any address
    (Ray's runtime-env agent binds the host's address, not the node's)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


class RayCluster:
    """A real local Ray cluster (`ray start --head` on 127.0.0.1), stopped on exit.

    Skips with the reason when Ray is missing or does not start, unless
    REQUIRE_RAY=1. Clients connect by its ``address``, as to a remote cluster.

    Several clusters may run at once (one per xdist worker): each gets its own
    ports, and on exit stops only its own processes (its session), never with
    `ray stop`, which kills every Ray process on the machine.
    """

    def __init__(self, cpus: int = 2):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # What a driver off the cluster (a GitHub runner) uses: the Ray Client server.
        self.client_port = free_port()
        self.client_address = f"ray://127.0.0.1:{self.client_port}"
        self.cpus = cpus
        self.temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: socket paths
        self.ray = Path(sys.executable).with_name("ray")
        self.session: int | None = None

    def __enter__(self) -> RayCluster:
        if not self.ray.exists():
            unavailable("Ray is not installed (uv sync --group ray)", "REQUIRE_RAY")
        self.runtime_env_port = free_port()
        ports = {"--port": self.port, "--ray-client-server-port": self.client_port,
                 "--dashboard-port": free_port(), "--dashboard-agent-listen-port": free_port(),
                 "--dashboard-agent-grpc-port": free_port(),
                 "--runtime-env-agent-port": self.runtime_env_port,
                 "--metrics-export-port": free_port()}
        # Every process of the cluster is in a session of its own (workers too).
        starter = subprocess.Popen(
            [str(self.ray), "start", "--head", "--node-ip-address", "127.0.0.1",
             *[str(part) for flag, port in ports.items() for part in (flag, port)],
             "--min-worker-port", "0", "--max-worker-port", "0",
             "--num-cpus", str(self.cpus), "--include-dashboard=false",
             "--object-store-memory", str(200 * 2**20),
             "--disable-usage-stats", "--temp-dir", str(self.temp)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # A Ray Client connection starts a server process for the driver;
            # on a loaded two-core machine that can take longer than Ray's 30 s.
            env={**os.environ, "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "120"},
            start_new_session=True)
        self.session = starter.pid
        try:
            _, stderr = starter.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.__exit__()
            unavailable("`ray start --head` did not finish in 120 s", "REQUIRE_RAY")
        if starter.returncode != 0:
            self.__exit__()
            unavailable(f"`ray start --head` failed: {stderr.strip()[-500:]}", "REQUIRE_RAY")
        # `ray start` returns before its agents listen: a Ray Client driver
        # needs the runtime-env agent (the client server asks it for the
        # driver's environment) and the client server itself.
        for port in (self.runtime_env_port, self.client_port):
            deadline = time.monotonic() + 60
            while not _listening(port):
                if time.monotonic() > deadline:
                    self.__exit__()
                    unavailable(f"the Ray cluster's port {port} is not listening after 60 s",
                                "REQUIRE_RAY")
                time.sleep(0.2)
        return self

    def client_logs(self) -> str:
        """The tail of the Ray Client servers' error logs (for a failing test's message)."""
        found = sorted(self.temp.glob("session_*/logs/ray_client_server*.err"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in found)

    def processes(self) -> list[int]:
        """The pids of this cluster's session (its head, agents and workers)."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z" and os.getsid(int(entry)) == self.session:
                        pids.append(int(entry))
                except (OSError, IndexError):
                    pass
        return pids

    def __exit__(self, *exc) -> None:
        try:
            import ray

            ray.shutdown()
        except ImportError:
            pass
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            for pid in self.processes():
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.monotonic() + wait
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(self.temp, ignore_errors=True)


def docker_registry(binary: str, root: Path) -> tuple[str, subprocess.Popen]:
    """Start Debian's docker-registry on a loopback port, storing under ``root``.

    Returns its ``host:port`` and process. Docker trusts 127.0.0.0/8 registries
    over plain HTTP.

    Raises:
        RuntimeError: If it does not answer within 30 s.
    """
    port = free_port()
    config = root / "config.yml"
    config.write_text("version: 0.1\n"
                      f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    if not wait_for_http(f"http://127.0.0.1:{port}/v2/", process, 30):
        process.kill()
        raise RuntimeError("docker-registry did not start")
    return f"127.0.0.1:{port}", process
