"""A real S3-compatible server for tests: moto's server mode (`moto_server`) as its own process.

`S3Server.start(host)` runs it on `host` (127.0.0.1, or a test's own network-namespace address) and a free
port, waits until it answers, and `stop()` ends it. `env()` is what a process needs to reach it through
s3fs/botocore with credentials from the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, the region
and `AWS_ENDPOINT_URL` (botocore reads the endpoint from there, so no flyte_lab setting is involved).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.process_helpers import free_port, wait_for

MOTO = str(Path(sys.executable).parent / "moto_server")


class Unavailable(Exception):
    """Why no S3 server can be started here."""


class S3Server:
    def __init__(self, proc: subprocess.Popen[bytes], host: str, port: int, log: Path) -> None:
        self.proc, self.host, self.port, self.log = proc, host, port, log

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": "flyte-lab-test", "AWS_SECRET_ACCESS_KEY": "flyte-lab-test-secret",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint,
                # no instance-metadata lookups, no shared config files from the machine
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    @classmethod
    def start(cls, host: str = "127.0.0.1", prefix: list[str] | None = None, port: int | None = None) -> S3Server:
        """`prefix` runs the server inside something (e.g. `ip netns exec NS`), and probes it from there."""
        if not os.path.exists(MOTO):
            raise Unavailable("moto's server is not installed: pip install 'moto[server]'")
        try:
            import s3fs  # noqa: F401
        except ImportError:
            raise Unavailable("s3fs is not installed: pip install s3fs") from None
        port = port or free_port()
        log = Path(tempfile.mkstemp(prefix="flyte_lab-moto-", suffix=".log")[1])
        with log.open("wb") as out:
            proc = subprocess.Popen([*(prefix or []), MOTO, "-H", host, "-p", str(port)], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        server = cls(proc, host, port, log)
        try:
            wait_for(lambda: server.answers(prefix) or proc.poll() is not None, 60, "moto_server to answer")
            if proc.poll() is not None:
                raise Unavailable(f"moto_server exited ({proc.returncode}): {log.read_text()[-1000:]}")
        except BaseException:
            server.stop()
            raise
        return server

    def answers(self, via: list[str] | None = None) -> bool:
        """Any HTTP answer on moto's own API route; `via` runs the probe elsewhere (e.g. `ip netns exec NS`)."""
        probe = f"import urllib.request; urllib.request.urlopen('{self.endpoint}/moto-api/', timeout=2).read()"
        try:
            return subprocess.run([*(via or []), sys.executable, "-c", probe], capture_output=True,
                                  timeout=30).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def make_bucket(self, name: str) -> None:
        import boto3

        env = self.env()
        client = boto3.client("s3", endpoint_url=self.endpoint, region_name=env["AWS_DEFAULT_REGION"],
                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        client.create_bucket(Bucket=name)
        client.close()

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        import boto3

        env = self.env()
        client = boto3.client("s3", endpoint_url=self.endpoint, region_name=env["AWS_DEFAULT_REGION"],
                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        try:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
            except ProcessLookupError:
                pass
        self.log.unlink(missing_ok=True)
