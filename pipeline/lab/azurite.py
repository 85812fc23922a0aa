"""Azurite (the Azure Storage emulator): Blob, Queue and Table in one local process.

Used by the lab run (``python -m pipeline run --lab``) and by the tests. ``AzuriteProcess``
starts ``node_modules/.bin/azurite`` on free ports of 127.0.0.1 in a temporary directory and gives
a connection string. It can be stopped and started again on the same ports, which is how a test
simulates storage going away in the middle of a cycle. With ``persistent=True`` the data survives
such a restart (it lives in the temporary directory); otherwise Azurite keeps everything in memory
and a restart starts empty.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # pipeline/lab/azurite.py -> repository
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"

# Azurite's well-known development account; it is public and only valid against the emulator.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


class AzuriteError(RuntimeError):
    """Azurite could not be started or did not answer on its ports."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class AzuriteProcess:
    """One Azurite process with Blob, Queue and Table on free loopback ports."""

    def __init__(self, *, persistent: bool = False) -> None:
        if not AZURITE_BIN.exists():
            raise AzuriteError(f"{AZURITE_BIN} is missing; run scripts/bootstrap (npm install)")
        self.persistent = persistent
        self.workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
        self.blob_port = free_port()
        self.queue_port = free_port()
        self.table_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def connection_string(self) -> str:
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT_NAME};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT_NAME};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT_NAME};"
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _argv(self) -> list[str]:
        argv = [
            str(AZURITE_BIN),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
            "--skipApiVersionCheck", "--disableTelemetry", "--silent",
        ]  # fmt: skip
        # Azurite refuses --location together with --inMemoryPersistence; the working
        # directory (cwd) is the temporary one either way.
        argv += ["--location", str(self.workdir)] if self.persistent else ["--inMemoryPersistence"]
        return argv

    def start(self) -> AzuriteProcess:
        """Start Azurite (if it is not running) and wait until all three ports accept."""
        with self._lock:
            if self.running:
                return self
            log = (self.workdir / "azurite.log").open("ab")
            self._process = subprocess.Popen(
                self._argv(), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
            log.close()
            self._wait_for_ports()
            return self

    def _wait_for_ports(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        ports = (self.blob_port, self.queue_port, self.table_port)
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                output = (self.workdir / "azurite.log").read_text(errors="replace")[-2000:]
                raise AzuriteError(
                    f"azurite exited with status {self._process.returncode}: {output}"
                )
            if all(_port_open(port) for port in ports):
                return
            time.sleep(0.05)
        self._terminate()
        raise AzuriteError(f"azurite did not open ports {ports} in {START_TIMEOUT_SECONDS:.0f}s")

    def stop(self) -> None:
        """Stop Azurite; the ports stay reserved for ``start()`` to reuse."""
        with self._lock:
            self._terminate()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def restart(self) -> AzuriteProcess:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop Azurite and remove its temporary directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> AzuriteProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
