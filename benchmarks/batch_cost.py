"""What the cost columns add to a batch: the per-row price lookup and building the result frame.

Run as ``python benchmarks/batch_cost.py`` (a few seconds). No network: rows are made from a
fixed ``Completion``. Figures, medians of 7 repeats, beside a baseline run in the same process:

1. ``ok_row`` per row (now with ``cost`` and ``cached``), prices set with ``set_prices`` and
   from a ``PIENTEGER_PRICES`` file, against the ``ok_row`` of the frame module before the cost
   columns (read from git, ``--baseline REV``, default ``main``).
2. ``result_frame`` for 10,000 rows, against the baseline module's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pandas as pd

from pienteger_nb.batch import frame
from pienteger_nb.ledger import prices
from pienteger_nb.types import Choice, Completion, Usage

ROWS = 10_000
REPEATS = 7


def _baseline(rev: str) -> ModuleType:
    """The frame module as it was at ``rev``, loaded under another name beside today's."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(["git", "show", f"{rev}:pienteger_nb/batch/frame.py"], cwd=root,
                            capture_output=True, text=True, check=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "frame_baseline.py")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location("pienteger_nb.batch.frame_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _median(fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default="main")
    args = parser.parse_args()
    base = _baseline(args.baseline)
    c = Completion(id="cmpl", model="text-davinci:003", choices=(Choice("some text", 0, "length"),),
                   usage=Usage(12, 40, 52, "reported"), requested_model="text-davinci-003")
    completions = [c] * ROWS
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)")

    def rows_now() -> list[dict[str, Any]]:
        return [frame.ok_row(x) for x in completions]

    def rows_base() -> list[dict[str, Any]]:
        return [base.ok_row(x) for x in completions]

    b = _median(rows_base)
    prices.set_prices({"text-davinci-003": (0.02, 0.04)})
    n = _median(rows_now)
    prices.set_prices(None)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"text-davinci-003": 0.02}, handle)
    os.environ["PIENTEGER_PRICES"] = handle.name
    f = _median(rows_now)
    del os.environ["PIENTEGER_PRICES"]
    print(f"ok_row per row: baseline {b / ROWS * 1e6:.2f} µs; with cost, set_prices {n / ROWS * 1e6:.2f} µs "
          f"({n / b:.2f}x); with cost, price file {f / ROWS * 1e6:.2f} µs ({f / b:.2f}x)")

    labels, items = pd.RangeIndex(ROWS), ["prompt"] * ROWS
    now_rows, base_rows = rows_now(), rows_base()
    base.result_frame(labels, items, list(base_rows))  # warm both (imports, pandas caches) first
    frame.result_frame(labels, items, list(now_rows))
    pairs = [(_median(lambda: base.result_frame(labels, items, list(base_rows))),
              _median(lambda: frame.result_frame(labels, items, list(now_rows)))) for _ in range(3)]
    fb, fn = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    print(f"result_frame, {ROWS:,} rows: baseline {fb * 1e3:.1f} ms; with cost and cached {fn * 1e3:.1f} ms "
          f"({fn / fb:.2f}x)")


if __name__ == "__main__":
    main()
