"""The package loads its public names on first use: the message tier imports no zmq."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pollframe

INIT = Path(pollframe.__file__)


def _imports_zmq(statement: str) -> bool:
    code = f"import sys\n{statement}\nprint('zmq' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "True"


@pytest.mark.timeout(60)
def test_importing_the_message_tier_the_codec_and_the_tasks_does_not_import_zmq():
    assert not _imports_zmq("import pollframe.handler, pollframe.codec, pollframe.errors, pollframe.tasks")
    assert not _imports_zmq("from pollframe import MessageHandler, message, JsonCodec, RemoteError")
    assert _imports_zmq("from pollframe import Requester")  # the check itself sees zmq when it is loaded


def test_every_public_name_resolves_to_the_object_its_module_defines():
    import importlib

    for name in pollframe.__all__:
        module = importlib.import_module(pollframe._PUBLIC[name])
        assert getattr(pollframe, name) is getattr(module, name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pollframe.nope  # noqa: B018


def test_the_lazy_table_and_the_imports_for_type_checkers_name_the_same_things():
    tree = ast.parse(INIT.read_text())
    guarded = next(node for node in tree.body if isinstance(node, ast.If))  # if TYPE_CHECKING:
    imported = {(stmt.module, alias.name) for stmt in guarded.body if isinstance(stmt, ast.ImportFrom)
                for alias in stmt.names}
    assert imported == {(module, name) for name, module in pollframe._PUBLIC.items()}
    assert pollframe.__all__ == sorted(pollframe._PUBLIC)
