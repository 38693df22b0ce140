"""The benchmark runs end to end (tiny counts) and its table has every row and every target.

No figure is asserted (speed is the benchmark's job, not the tests'): only that each row was
measured or says why not, and that the echo rows really echoed (no client errors).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.run import ROWS, TARGETS
from tests.servers import ROOT


@pytest.mark.timeout(360)  # every row of every section, each server started and stopped
def test_quick_benchmark_prints_every_row(tmp_path):
    out = tmp_path / "docs"
    cmd = [sys.executable, "bench/run.py", "--quick", "--duration", "0.3", "--warmup", "0.1", "--hold", "20",
           "--bc-receivers", "5", "--bc-messages", "3", "--bc-drain", "5", "--scale-max", "5",
           "--scale-messages", "3", "--idle", "20", "--idle-plain", "20", "--idle-inflight", "10", "--storm", "10",
           "--out", str(out),
           "--json", str(tmp_path / "last.json")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=340)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = (out / "benchmarks.md").read_text()
    assert (out / "benchmarks.png").stat().st_size > 10_000
    table_lines = [line for line in doc.splitlines() if line.startswith("| ")]
    for row in ROWS:
        line = next((x for x in table_lines if x.startswith(f"| {row.label} |")), None)
        assert line is not None, f"row {row.label!r} missing from the table"
        if row.pending:
            assert row.pending in line
        elif "Redis is not reachable" in line:
            continue
        elif row.auth:
            assert "not available on this branch" in line or line.split("|")[2].strip() != "-"
        else:
            assert line.split("|")[2].strip() not in ("-", ""), f"row {row.label!r} has no figure: {line}"
    for target in TARGETS:
        line = next((x for x in table_lines if x.startswith(f"| {target.label} |")), None)
        assert line is not None and any(v in line for v in ("**PASS**", "**MISS**", "**PENDING**")), target.label
    results = json.loads((tmp_path / "last.json").read_text())["results"]
    for key in ("echo-plain-daphne", "echo-rockstar-daphne", "echo-rockstar-uvicorn", "echo-bare"):
        assert results[key]["errors"] == 0 and results[key]["rate"] > 0, key
    assert results["mem-rockstar-daphne"]["held"] == 20
    assert (out / "benchmarks-scale.png").stat().st_size > 10_000
    idle, storm = results["idle-rockstar-regredis"], results["storm-rockstar-regredis"]
    if "skipped" not in idle:  # without Redis these two say so
        assert idle["held"] == idle["counted"] == 20, idle
    if "skipped" not in storm:
        assert storm["held"] == storm["reconnected"] == storm["counted"] == 10, storm
