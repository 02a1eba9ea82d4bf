"""The user's warm local executor: one local Dask cluster, with its kernel templates and pooled kernels, kept
alive between runs in a process of its own (`engine/executor_process.py`) and shared by every run of the user
that would start the same cluster (CLI, Jupyter launches, the scheduler's runs).

Which runs share one: those of the same interpreter, flyte_lab code, FLYTE_LAB_HOME, worker count and
environment (less a few per-shell variables, `VOLATILE`), since a kernel forked there inherits the executor's
environment exactly as it would inherit the driver's from a private cluster. Anything else gets an executor of
its own (`executor_key`), each in `FLYTE_LAB_HOME/executors/KEY/` (0700): `executor.json` (address, pid), a TLS
certificate and key made for it (0600), its log, and a lock file.

Private to its user: the scheduler listens on 127.0.0.1 with mutual TLS (Dask's `tls://`, client certificates
required); the only certificate it accepts lives in that 0700 folder, so another local user cannot connect.
Started on first use (under the lock, so two runs never start two), stopped after `idle_s` without clients or
tasks (the executor takes the same lock, so a client that read its address connects before it can stop), and
by `flyte-lab executor stop`. Each run keeps its own driver, lease and client: the executor only runs tasks,
and its death is a lost cluster to the runs it served (`flyte-lab resume` reruns what did not finish).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flyte_lab.errors import DriverError
from flyte_lab.private_fs import make_private_dirs, write_private

EXECUTOR_MAIN = "flyte_lab.engine.executor_process"
IDLE_S = 600.0  # FLYTE_LAB_EXECUTOR_IDLE (seconds) overrides
START_TIMEOUT_S = 60.0
# per-shell variables: two terminals (or a terminal and Jupyter) of one user differ in these, and no task reads them
VOLATILE = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "TERM", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "TERM_SESSION_ID",
                      "COLORTERM", "COLUMNS", "LINES", "PS1", "PS2", "PROMPT_COMMAND", "SSH_TTY", "WINDOWID",
                      "LS_COLORS", "HISTFILE", "HISTSIZE", "PYTEST_CURRENT_TEST", "JPY_PARENT_PID",
                      "JPY_SESSION_NAME", "FLYTE_LAB_DRIVER_ID"})


@dataclass(frozen=True)
class ExecutorInfo:
    folder: Path
    address: str
    pid: int
    workers: int
    started: float

    def security(self) -> Any:
        return security(self.folder, "client")


def idle_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get("FLYTE_LAB_EXECUTOR_IDLE", IDLE_S)))
    except ValueError:
        return IDLE_S


def executors_root(home: Path) -> Path:
    return home / "executors"


def executor_key(workers: int) -> str:
    """What makes two runs' executors interchangeable (see the module docstring), as a short digest."""
    import flyte_lab

    package = Path(flyte_lab.__file__).parent
    code = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):  # an edited or upgraded flyte_lab gets a new executor
        stat = source.stat()
        code.update(f"{source.relative_to(package)}:{stat.st_mtime_ns}:{stat.st_size}\n".encode())
    env = sorted((k, v) for k, v in os.environ.items() if k not in VOLATILE)
    parts = json.dumps({"python": sys.executable, "code": code.hexdigest(), "workers": workers, "env": env})
    return hashlib.sha256(parts.encode()).hexdigest()[:16]


def security(folder: Path, role: str) -> Any:
    """Dask's TLS settings for this executor: its one certificate is CA, scheduler, worker and client identity."""
    from distributed.security import Security

    cert, key = str(folder / "tls.crt"), str(folder / "tls.key")
    if role == "client":
        return Security(tls_ca_file=cert, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
    return Security(tls_ca_file=cert, tls_client_cert=cert, tls_client_key=key, tls_scheduler_cert=cert,
                    tls_scheduler_key=key, tls_worker_cert=cert, tls_worker_key=key, require_encryption=True)


def make_certificate(folder: Path) -> None:
    """A fresh self-signed certificate and key, 0600, for one executor (never reused by another)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flyte-lab-executor")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    for name_, data in (("tls.key", key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption())),
                        ("tls.crt", cert.public_bytes(serialization.Encoding.PEM))):
        write_private(folder / name_, data)


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """The executor folder's lock: held while starting an executor, while connecting to it, and by the
    executor while it decides to stop."""
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_info(folder: Path) -> ExecutorInfo | None:
    """The executor recorded in `folder` if its process still runs, else None."""
    try:
        data = json.loads((folder / "executor.json").read_text())
        info = ExecutorInfo(folder, str(data["address"]), int(data["pid"]), int(data["workers"]),
                            float(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if _is_executor(info.pid) else None


def _is_executor(pid: int) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.uids().real == os.getuid() and proc.status() != psutil.STATUS_ZOMBIE \
            and any(EXECUTOR_MAIN in part for part in proc.cmdline())
    except psutil.Error:
        return False


def _start(folder: Path, workers: int) -> ExecutorInfo:
    """Start an executor in `folder` (its lock held) and wait until it records its address."""
    with contextlib.suppress(FileNotFoundError):
        (folder / "executor.json").unlink()
    make_certificate(folder)
    import flyte_lab

    log = os.open(folder / "executor.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # the flyte_lab this process runs (a source checkout on sys.path, or the installed one), whatever the
    # executor's working folder puts on its path; nothing added to the environment its kernels inherit
    code = (f"import sys; sys.path.insert(0, {source_root(flyte_lab)!r}); from {EXECUTOR_MAIN} import main; "
            "main(sys.argv[1:])")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(folder), str(workers), str(idle_timeout())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, cwd=str(folder),
            start_new_session=True)  # outlives the run that started it; the run's Ctrl-C does not reach it
    finally:
        os.close(log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = read_info(folder)
        if info is not None:
            _reap_later(proc)
            return info
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()
    raise DriverError(f"the local executor did not start (exit {proc.returncode}): {_last_line(folder)}; "
                      f"its log: {folder / 'executor.log'} (--cluster local runs without it)")


def source_root(package: Any) -> str:
    """The folder holding the flyte_lab this process runs (a source checkout on sys.path, or site-packages)."""
    return str(Path(package.__file__).resolve().parent.parent)


def _reap_later(proc: subprocess.Popen[bytes]) -> None:
    """Forget the child without leaving a zombie in a long-lived process (a Jupyter server, a scheduler)."""
    import threading

    threading.Thread(target=proc.wait, daemon=True, name="flyte-lab-executor-reaper").start()


def _last_line(folder: Path) -> str:
    try:
        lines = (folder / "executor.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"


@contextlib.contextmanager
def executor_client(home: Path, workers: int) -> Iterator[Any]:
    """A client of this user's executor for `workers` workers, started first if none runs."""
    from distributed import Client

    folder = Path(make_private_dirs(executors_root(home) / executor_key(workers)))
    with locked(folder):
        info = read_info(folder) or _start(folder, workers)
        try:
            # connected while the lock is held: the executor counts a client before it can decide to stop
            client: Any = Client(info.address, security=info.security(), timeout=10, set_as_default=False)
        except OSError as exc:
            raise DriverError(f"the local executor at {info.address} (pid {info.pid}) does not answer ({exc}); "
                              "`flyte-lab executor stop` stops it, --cluster local runs without it") from None
    client.flyte_lab_executor = info
    try:
        yield client
    finally:
        # a client whose executor died may fail to close (its reconnect found the port taken by another
        # process): that must not replace the run's own outcome (ClusterLost)
        with contextlib.suppress(Exception):
            client.close()


def running(home: Path) -> list[ExecutorInfo]:
    """Every live executor of this home."""
    root = executors_root(home)
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        info = read_info(folder)
        if info is not None:
            found.append(info)
    return found


def stop(home: Path, timeout: float = 30.0) -> list[ExecutorInfo]:
    """Stop every executor of this home (SIGTERM: each closes its kernels and cluster); the ones stopped."""
    import psutil

    stopped = running(home)
    for info in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for info in stopped:
        with contextlib.suppress(psutil.Error):
            psutil.Process(info.pid).wait(max(0.1, deadline - time.monotonic()))
        if _is_executor(info.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGKILL)
    return stopped
