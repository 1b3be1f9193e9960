"""`imnm up` as a user starts it: a child process in its own session, started in a folder of the
test's, read until it says it is up, stopped with Ctrl-C (SIGINT to its process group)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

EMBEDDED_BROKER = re.compile(r"kafka\s+(127\.0\.0\.1:\d+) \(embedded local broker, pid (\d+)")


def suite_env(**settings: str) -> dict[str, str]:
    """This environment without any IMNM_* setting of the caller's, plus ``settings``."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("IMNM_")},
        **{f"IMNM_{name.upper()}": value for name, value in settings.items()},
    }


class RunningSuite:
    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.cwd = cwd
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imnm_cli.main", "up", *args], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=cwd,
        )
        self.output: list[str] = []
        self.bootstrap: str | None = None
        self.broker_pid: int | None = None

    def wait_until_up(self, timeout: float = 120) -> str:
        """The broker's address, once every endpoint is printed."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode(errors="replace")
            if not line:
                break
            self.output.append(line)
            match = EMBEDDED_BROKER.search(line)
            if match:
                self.bootstrap, self.broker_pid = match.group(1), int(match.group(2))
            if "Press Ctrl-C to stop" in line:
                break
        assert self.bootstrap, "imnm up did not print the broker address:\n" + self.printed()
        return self.bootstrap

    def printed(self) -> str:
        return "".join(self.output)

    def stop(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            rest, _ = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            rest, _ = self.process.communicate()
        self.output.append(rest.decode(errors="replace"))
        return self.process.returncode

    def assert_nothing_left(self) -> None:
        leftover = subprocess.run(["pgrep", "-f", str(self.cwd)], capture_output=True,
                                  check=False)
        assert leftover.stdout == b"", "a service was left running after Ctrl-C"
        assert self.broker_pid is not None and not Path(f"/proc/{self.broker_pid}").exists(), \
            "broker left running"
