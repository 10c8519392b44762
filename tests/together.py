"""Start processes that begin their work at the same instant: each prints ``ready`` and waits on
its stdin; once all are ready, every one is released. Used where processes must contend."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping


def run_together(script: str, envs: list[Mapping[str, str]], *, timeout: float = 240) -> list[str]:
    """Run ``script`` once per environment, released together; their stdouts, in order.

    ``script`` must print ``ready`` (flushed) and then read a line from stdin before its work.
    A process that fails fails the caller's test with its stderr; none is left running.
    """
    workers = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=dict(env)) for env in envs]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = []
        for worker in workers:
            out, err = worker.communicate(timeout=timeout)
            assert worker.returncode == 0, err
            outputs.append(out)
        return outputs
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
