"""Flame graphs of Sluice's contenders: `perf record` around `sluice run`, rendered to SVG
with inferno (`cargo install inferno`), for `driver.py --flamegraph DIR`.

perf samples every thread of the process (the async runtime's workers, the transform lanes,
librdkafka's broker and polling threads) with DWARF call graphs, because release builds keep no
frame pointers. The contender's CPU figures in a profiled run include perf's own work, so
compare figures from runs without `--flamegraph`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SAMPLES_PER_SECOND = 499
STACK_BYTES = 16384


def missing_tools() -> list[str]:
    """The commands a profiled run needs that are not on PATH."""
    return [tool for tool in ("perf", "inferno-collapse-perf", "inferno-flamegraph") if not shutil.which(tool)]


def wrap(argv: list[str], data: Path) -> list[str]:
    """`argv` run under `perf record`, writing its samples to `data`."""
    return ["perf", "record", "--quiet", "-F", str(SAMPLES_PER_SECOND), "--call-graph", f"dwarf,{STACK_BYTES}",
            "-o", str(data), "--", *argv]


def render(data: Path, svg: Path, title: str) -> None:
    """perf samples → folded stacks → an SVG flame graph beside them."""
    folded = data.with_suffix(".folded")
    with open(folded, "wb") as out:
        script = subprocess.Popen(["perf", "script", "-i", str(data)], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        subprocess.run(["inferno-collapse-perf", "--all"], stdin=script.stdout, stdout=out, check=True)
        script.stdout.close()
        if script.wait() != 0:
            raise RuntimeError(f"perf script -i {data} failed ({script.returncode})")
    with open(folded, "rb") as stacks, open(svg, "wb") as out:
        subprocess.run(["inferno-flamegraph", "--title", title, "--width", "1600"], stdin=stacks, stdout=out,
                       check=True)
