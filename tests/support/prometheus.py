"""A real Prometheus server (Debian's ``prometheus`` package) for tests: it scrapes the
given targets every second and answers queries on its HTTP API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

PROMETHEUS = "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, workdir: Path, targets: list[str]) -> None:
        if shutil.which(PROMETHEUS) is None:
            raise AssertionError("prometheus is not installed: apt-get install prometheus "
                                 "(.ci/system-packages.sh lists it)")
        self.dir = workdir / "prometheus"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.dir / "prometheus.yml").write_text(json.dumps({  # YAML is a superset of JSON
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "multiflexid",
                                "static_configs": [{"targets": targets}]}],
        }))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "prometheus.log"

    def start(self) -> Prometheus:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self.wait(lambda: self._get("/-/ready") is not None, "prometheus ready", 60)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return bytes(r.read())
        except OSError:
            return None

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` (its samples: ``{"metric": {...}, "value": [t, v]}``)."""
        raw = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if raw is None:
            raise AssertionError(f"prometheus did not answer {expr!r}:\n{self.log()}")
        doc = json.loads(raw)
        assert doc["status"] == "success", doc
        return list(doc["data"]["result"])

    def value(self, expr: str) -> float | None:
        """The one value of ``expr``, or None when it has no sample (yet)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def targets_up(self) -> bool:
        raw = self._get("/api/v1/targets")
        if raw is None:
            return False
        active = json.loads(raw)["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def wait(self, check: Any, what: str, timeout: float = 60.0) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            result = check()
            if result:
                return result
            time.sleep(0.25)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
