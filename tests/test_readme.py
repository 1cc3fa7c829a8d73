"""The README's code is run as a user would copy it."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pollframe.loop import PollLoop

pytestmark = pytest.mark.system

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.timeout(30)
def test_the_twenty_line_loop_example_prints_the_reply_and_exits_zero():
    code = re.search(r"## A loop in 25 lines\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pong ping\n"


def test_the_readme_gives_the_install_and_test_commands():
    text = README.read_text()
    assert "pip install -e . && python examples/example_app/main.py" in text
    assert "pip install -e '.[test]' && pytest" in text


@pytest.mark.timeout(60)
def test_the_testing_section_examples_pass_as_written(tmp_path):
    text = README.read_text()
    section = text[text.index("## Testing your application"):text.index("## Running the tests")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 4
    example_app = README.parent / "examples" / "example_app"
    test_file = tmp_path / "test_readme_kit.py"
    test_file.write_text(f"import sys\nsys.path.insert(0, {str(example_app)!r})\n\n" + "\n\n".join(blocks))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=README.parent, capture_output=True, text=True, timeout=50,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_the_peer_table_and_liveness_examples_run_as_written():
    text = README.read_text()
    section = text[text.index("## Who is still there"):text.index("`ReconnectingStream` is a DEALER")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


@pytest.mark.timeout(30)
def test_the_majordomo_example_prints_the_reply(tmp_path):
    text = README.read_text()
    section = text[text.index("### Majordomo (MDP/0.1)"):text.index("## The wire protocol")]
    script = tmp_path / "upper.py"
    script.write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=25)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[b'HELLO']\n"


def test_the_subclassing_section_names_every_public_name_of_pollloop():
    text = README.read_text()
    section = text[text.index("### Subclassing PollLoop"):text.index("### Processes in brief")]
    named = set(re.findall(r"`(\w+)", section))
    public = {name for name in dir(PollLoop) if not name.startswith("_")}
    missing = public - named
    assert not missing, f"add {sorted(missing)} to the README's 'Subclassing PollLoop' list of public names"
