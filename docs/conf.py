"""Sphinx configuration for pollframe's documentation site.

Build it (warnings are errors, as in CI) with pollframe importable, installed or on PYTHONPATH::

    pip install -e '.[docs]' && sphinx-build -W -b html docs docs/_build/html

The API reference is generated at build time from the package itself: every public module (no
``_`` in its dotted name) gets a page in ``api/``, so a new module is documented without editing
this file, and tests/test_docs.py checks that every public name there has a docstring.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

import pollframe

HERE = Path(__file__).resolve().parent

project = "pollframe"
author = "The pollframe authors"
copyright = "2026, The pollframe authors"
release = pollframe.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
python_use_unqualified_type_names = True

html_theme = "furo"
html_title = f"pollframe {release}"


def public_modules() -> list[str]:
    """pollframe's public modules: every module or package with no ``_``-prefixed part in its name."""
    names = ["pollframe"]
    for info in pkgutil.walk_packages(pollframe.__path__, "pollframe."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_api_pages(app: object = None) -> None:
    """One page per public module under docs/api/, and docs/api/index.rst listing them."""
    api = HERE / "api"
    api.mkdir(exist_ok=True)
    modules = public_modules()
    for name in modules:
        importlib.import_module(name)
        title = f"``{name}``"
        options = "   :no-members:\n" if name == "pollframe" else ""
        page = f"{title}\n{'=' * len(title)}\n\n.. automodule:: {name}\n{options}"
        _write_if_changed(api / f"{name}.rst", page)
    for stale in api.glob("pollframe*.rst"):
        if stale.stem not in modules:
            stale.unlink()
    top = sys.modules["pollframe"]
    homes = {name: getattr(getattr(top, name), "__module__", "pollframe") for name in top.__all__}
    shortcuts = "\n".join(
        f"   * - :py:obj:`{name} <{home}.{name}>`\n     - ``{home}``" for name, home in homes.items()
    )
    pages = "\n".join(f"   {name}" for name in modules)
    _write_if_changed(api / "index.rst", f"""API reference
=============

Generated from the docstrings. These names are importable from ``pollframe`` itself
(``from pollframe import PollLoop``); each is documented in the module that defines it.

.. list-table::
   :header-rows: 1

   * - name
     - defined in
{shortcuts}

.. toctree::
   :maxdepth: 1

{pages}
""")



def setup(app: Any) -> None:
    """Write the API pages when a build starts (importing this file writes nothing)."""
    app.connect("builder-inited", write_api_pages)
