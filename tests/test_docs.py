"""The documentation site: its code runs as written, it builds without a warning, and every public name
has a docstring for the API reference.

Pages under docs/ follow one convention for their code: the ``python`` blocks of a page run in order as
one script, and a ``text`` block right after a ``python`` block is what that block prints. A page whose
Python blocks are pytest tests (the testing how-to) is run by pytest instead. docs/design.md and
docs/reliability.md sketch the API and are not run.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLE_APP = ROOT / "examples" / "example_app"

# Pages whose blocks run as one script: page -> the directory it runs in (and imports from).
SCRIPT_PAGES = {
    "tutorial.md": EXAMPLE_APP,
    "howto/subclass.md": ROOT,
    "howto/embed.md": ROOT,
}
# Pages whose blocks are pytest tests: page -> the directory on sys.path.
PYTEST_PAGES = {
    "howto/testing.md": EXAMPLE_APP,
}
NOT_RUN = {"design.md", "reliability.md", "deploying.md", "changelog.md", "index.md"}

FENCE = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)


def blocks(page: str) -> list[tuple[str, str]]:
    """The fenced blocks of a page as (language, code), in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer((DOCS / page).read_text())]


def script_and_output(page: str) -> tuple[str, str]:
    """A page's python blocks joined into one script, and the text blocks that follow them."""
    code, output, last = [], [], None
    for lang, text in blocks(page):
        if lang == "python":
            code.append(text)
        elif lang == "text" and last == "python":
            output.append(text)
        last = lang
    return "\n".join(code), "".join(output)


def child_env(path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    return env


def test_every_page_with_python_blocks_is_run_by_this_file():
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "_build" not in p.parts}
    with_code = {page for page in pages if any(lang == "python" for lang, _ in blocks(page))}
    assert with_code - NOT_RUN <= set(SCRIPT_PAGES) | set(PYTEST_PAGES)


@pytest.mark.system
@pytest.mark.timeout(60)
@pytest.mark.parametrize("page", sorted(SCRIPT_PAGES))
def test_the_python_blocks_of_the_page_run_and_print_what_the_page_shows(page):
    code, expected = script_and_output(page)
    assert code, f"{page} has no python block"
    result = subprocess.run([sys.executable, "-u", "-c", code], cwd=SCRIPT_PAGES[page],
                            env=child_env(SCRIPT_PAGES[page]), capture_output=True, text=True, timeout=50)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


@pytest.mark.system
@pytest.mark.timeout(60)
@pytest.mark.parametrize("page", sorted(PYTEST_PAGES))
def test_the_tests_on_the_page_pass_as_written(page, tmp_path):
    code = [text for lang, text in blocks(page) if lang == "python"]
    assert code, f"{page} has no python block"
    test_file = tmp_path / "test_page.py"
    test_file.write_text("\n\n".join(code))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(test_file)],
        cwd=tmp_path, env=child_env(PYTEST_PAGES[page]), capture_output=True, text=True, timeout=50,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(re.findall(r"^def test_", text, re.M)) for text in code)
    assert f"{count} passed" in result.stdout


@pytest.mark.system
@pytest.mark.timeout(120)
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("sphinx", reason="the docs extra is not installed")
    pytest.importorskip("furo", reason="the docs extra is not installed")
    pytest.importorskip("myst_parser", reason="the docs extra is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=110,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "html" / "api" / "pollframe.loop.html").is_file()


# ------------------------------------------------------------------ docstrings for the API reference


def public_modules() -> list[str]:
    """The modules docs/conf.py gives an API page (importing conf.py writes nothing)."""
    spec = importlib.util.spec_from_file_location("pollframe_docs_conf", DOCS / "conf.py")
    assert spec is not None and spec.loader is not None
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf.public_modules()


def public_names(module) -> list[str]:
    """What autodoc documents for a module: its ``__all__``, else the public names it defines."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, obj in vars(module).items()
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__
            and (inspect.isclass(obj) or inspect.isfunction(obj))]


def undocumented() -> list[str]:
    missing = []
    for modname in public_modules():
        module = importlib.import_module(modname)
        if not inspect.getdoc(module):
            missing.append(modname)
        if modname == "pollframe":
            continue  # the package re-exports names documented in their own modules
        for name in public_names(module):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants and aliases are described in the module docstring
            if getattr(obj, "__module__", modname) != modname:
                continue  # re-exported: checked where it is defined
            if not (obj.__doc__ or "").strip():
                missing.append(f"{modname}.{name}")
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    func = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                    # getdoc() finds a docstring an override inherits, as autodoc shows it.
                    if (isinstance(func, property) or inspect.isfunction(func)) and not inspect.getdoc(
                            getattr(obj, attr)):
                        missing.append(f"{modname}.{name}.{attr}")
    return missing


def test_every_public_class_function_and_method_has_a_docstring():
    assert undocumented() == []
