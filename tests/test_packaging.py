"""What the installed distribution must hold for a user: checked when pollframe runs from an install.

CI installs the wheel into a fresh virtual environment and runs the suite from a copy of tests/ outside
the source tree, so these tests see exactly what ``pip install pollframe`` gives. Run from a checkout
(``PYTHONPATH=.``), the imported package is not the installed one and they are skipped.
"""
from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import pollframe


def installed() -> metadata.Distribution:
    """The distribution pollframe was imported from; skip the test when it was imported from a checkout."""
    try:
        dist = metadata.distribution("pollframe")
    except metadata.PackageNotFoundError:
        pytest.skip("pollframe is not installed")
    if dist.read_text("RECORD") is None:
        pytest.skip(f"pollframe's metadata is the egg-info of a source tree ({dist.locate_file('')})")
    init = Path(str(dist.locate_file("pollframe/__init__.py")))
    if not init.exists() or init.resolve() != Path(pollframe.__file__).resolve():
        pytest.skip(f"pollframe is imported from {pollframe.__file__}, not from an installed distribution")
    return dist


def test_the_installed_distribution_has_the_version_the_package_reports():
    assert installed().version == pollframe.__version__


def test_the_installed_package_is_marked_typed():
    installed()
    assert (Path(pollframe.__file__).parent / "py.typed").is_file()


def test_the_pytest_plugin_is_registered_through_its_entry_point():
    plugins = {ep.name: ep.value for ep in installed().entry_points if ep.group == "pytest11"}
    assert plugins == {"pollframe": "pollframe.testing.plugin"}


def test_the_oldest_python_classifier_is_the_one_python_requires_names():
    # .ci/run tests every Python the classifiers name; python_requires must not promise an older one.
    dist = installed()
    versions = [c.rsplit(" :: ", 1)[1] for c in dist.metadata.get_all("Classifier")
                if c.startswith("Programming Language :: Python :: 3.")]
    assert versions, "no Python version classifiers"
    assert dist.metadata["Requires-Python"] == f">={versions[0]}"
    assert sorted(versions, key=lambda v: tuple(map(int, v.split(".")))) == versions


def test_the_pollframe_command_is_installed_beside_the_interpreter_and_answers_help():
    scripts = {ep.name: ep.value for ep in installed().entry_points if ep.group == "console_scripts"}
    assert scripts == {"pollframe": "pollframe.cli:main"}
    # pip installs a console script into the environment's bin directory, beside its python.
    command = Path(sys.executable).parent / "pollframe"
    assert command.is_file(), f"no {command}"
    done = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: pollframe")
