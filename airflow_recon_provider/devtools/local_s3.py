"""A local S3-compatible server for tests and the demo: ``moto`` in server mode (the
``test`` extra installs ``moto[server]``), as a separate process on 127.0.0.1.

    with LocalS3Server() as s3:
        s3.create_bucket("recon-artifacts")
        os.environ["AIRFLOW_CONN_AWS_RECON_ARTIFACTS"] = s3.airflow_connection()
        # [recon] artifacts_base_url = s3://recon-artifacts/prod
        # [recon] artifacts_conn_id  = aws_recon_artifacts

Not a real S3: nothing is kept after :meth:`stop`. Nothing here is imported by the provider.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from airflow_recon_provider.devtools.stand_ins import LOCALHOST, free_port

#: moto accepts any key pair; these are what the connection carries
ACCESS_KEY = "recon-test-key"
SECRET_KEY = "recon-test-secret"
REGION = "us-east-1"


class LocalS3Server:
    """``python -m moto.server`` on 127.0.0.1 and a free port, until :meth:`stop`."""

    def __init__(self, port: int | None = None, *, startup_timeout: float = 30.0) -> None:
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def start(self) -> LocalS3Server:
        if self._process is not None:
            return self
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOCALHOST, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with status {self._process.returncode} at start")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"moto server did not answer on {self.endpoint_url} within {self.startup_timeout:g} s"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> LocalS3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def connection_extra(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "region_name": REGION}

    def airflow_connection(self) -> str:
        """An ``aws`` connection in Airflow's JSON form (``AIRFLOW_CONN_<ID>``)."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": self.connection_extra(),
            }
        )

    def client(self) -> Any:
        """A boto3 S3 client on this server (to create buckets, list objects in tests)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "LocalS3Server"]
