"""The README's code is run as a user would copy it."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.timeout(30)
def test_the_twenty_line_loop_example_prints_the_reply_and_exits_zero():
    code = re.search(r"## A loop in 20 lines\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pong ping\n"


def test_the_readme_gives_the_install_and_test_commands():
    text = README.read_text()
    assert "pip install -e . && python examples/example_app/main.py" in text
    assert "pip install -e '.[test]' && pytest" in text
