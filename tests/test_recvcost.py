"""benchmarks/recvcost.py still measures pollframe's own readers (a benchmark that breaks silently lies)."""
from __future__ import annotations

import importlib.util
import os

import pytest

pytestmark = pytest.mark.timeout(30)

HERE = os.path.dirname(os.path.abspath(__file__))


def test_recvcost_drains_the_whole_queue_with_each_pollframe_reader(capsys):
    spec = importlib.util.spec_from_file_location(
        "recvcost", os.path.join(os.path.dirname(HERE), "benchmarks", "recvcost.py"))
    assert spec is not None and spec.loader is not None
    recvcost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recvcost)
    assert recvcost.main(["--n", "200", "--reps", "1"]) == 0  # raises "left messages behind" otherwise
    out = capsys.readouterr().out
    assert "pollframe reader (frames)" in out and "pollframe reader (single)" in out
