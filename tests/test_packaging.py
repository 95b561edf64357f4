"""The wheel holds every package of the repository: pyproject.toml lists
its packages one by one (cli/ and export/ are mapped under tess_keras), so
a new sub-package that is not listed would be missing from a non-editable
install while the editable one used in development still finds it."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def package_names_on_disk():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    names = set()
    for package, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            names.add(".".join([package, *relative.parts]))
    return names, set(config["packages"])


def test_every_package_folder_is_listed_in_pyproject():
    on_disk, listed = package_names_on_disk()
    assert on_disk - listed == set(), f"add these to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert listed - on_disk == set(), f"listed but not on disk: {sorted(listed - on_disk)}"


def test_templates_are_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    templates = {p.name for p in (ROOT / "export" / "templates").iterdir() if p.is_file()}
    patterns = config["tess_keras.export"]
    assert templates and all(any(pathlib.PurePath("templates", name).match(pattern) for pattern in patterns)
                             for name in templates), (templates, patterns)
