"""The tracer's cost: streaming throughput through a Stream, traced and not, in the same run.

The traced receiver records every message (OUT) into its per-process
trace file; the target is a traced throughput of at least 0.3x the
untraced one. The untraced Stream is the same code path as ``pf-stream``
in the throughput scenario, so that comparison also shows that tracing
off costs nothing (the tracer is decided when the Stream is made).
"""
from __future__ import annotations

from functools import partial
from typing import Any, List

from harness import Case
from pushpull import measure

COMPETITORS = ["pf-stream", "pf-stream-traced"]


def trace_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    """Streaming PUSH -> PULL into a Stream, with and without POLLFRAME_TRACE."""
    comps = [c for c in COMPETITORS if c in competitors or c == "pf-stream-traced"]
    if "pf-stream" not in comps:
        return []
    return [Case(
        scenario="tracing", case="streaming", competitors=comps, unit="msg/s",
        measure=partial(measure, n=sizes.throughput, k=1, prefilled=False),
        baseline=("tracing", "streaming", "pf-stream"),
    )]
