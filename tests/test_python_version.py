"""The package's code matches ``requires-python``: every .py file parses
with the oldest supported Python's grammar and imports no standard-library
module that version lacks."""

import ast
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Standard-library modules added after 3.9, with the version that added them.
NEW_STDLIB = {"zoneinfo": (3, 9), "graphlib": (3, 9), "tomllib": (3, 11), "wsgiref.types": (3, 11)}


def oldest_python():
    """``(3, X)`` from pyproject.toml's ``requires-python = ">=3.X"``."""
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)", spec.strip())
    assert match, f"requires-python {spec!r} is not of the form '>=3.X'"
    return int(match[1]), int(match[2])


def python_files():
    """Every .py file git knows (tracked or new, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def syntax_errors(sources, version):
    """``file:line message`` for each source ``ast.parse`` rejects under ``version``."""
    errors = []
    for name, source in sources:
        try:
            ast.parse(source, filename=str(name), feature_version=version)
        except SyntaxError as error:
            errors.append(f"{name}:{error.lineno} {error.msg}")
    return errors


def too_new_imports(sources, version):
    """``file:line module`` for each import of a module newer than ``version``."""
    found = []
    for name, source in sources:
        for node in ast.walk(ast.parse(source)):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found += [f"{name}:{node.lineno} {m}" for m in modules if NEW_STDLIB.get(m, (0, 0)) > version]
    return found


def test_requires_python_covers_tomllib_and_this_interpreter():
    assert oldest_python() >= (3, 11), "tomllib and the pinned Keras / NumPy releases need Python 3.11"
    assert sys.version_info[:2] >= oldest_python()


def test_every_file_parses_with_the_oldest_supported_grammar():
    sources = [(path.relative_to(ROOT), path.read_text()) for path in python_files()]
    assert len(sources) > 50  # the package, cli/, export/, bench/ and tests/
    assert syntax_errors(sources, oldest_python()) == []


def test_no_standard_library_module_newer_than_the_oldest_python():
    sources = [(path.relative_to(ROOT), path.read_text()) for path in python_files()]
    assert too_new_imports(sources, oldest_python()) == []


@pytest.mark.parametrize(
    "source, version",
    [
        ("match x:\n    case 1:\n        pass\n", (3, 9)),  # 3.10 grammar
        ("try:\n    pass\nexcept* ValueError:\n    pass\n", (3, 10)),  # 3.11 grammar
        ("with (open('a') as a, open('b') as b):\n    pass\n", (3, 8)),  # 3.9 grammar
    ],
)
def test_the_checks_reject_newer_grammar(source, version):
    assert syntax_errors([("snippet.py", source)], version) != []


def test_the_checks_find_a_too_new_module():
    assert too_new_imports([("a.py", "import tomllib\n")], (3, 10)) == ["a.py:1 tomllib"]
    assert too_new_imports([("a.py", "from wsgiref import types\n")], (3, 10)) == ["a.py:1 wsgiref.types"]
    assert too_new_imports([("a.py", "import tomllib\n")], (3, 11)) == []
