"""The install paths (pip, conda, README, CI) must agree with each other."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req, maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= set(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {r for r in pip_section if not r.startswith("-e")}
    assert listed == wanted
    assert "-e ." in pip_section


def test_torch_is_pinned_everywhere():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_reqs = [r for r in project["dependencies"] if _name(r) == "torch"]
    assert torch_reqs == ["torch==2.13.0"]
    assert 'pip install --quiet --disable-pip-version-check "torch==2.13.0"' in (ROOT / "Makefile").read_text()


def test_readme_commands_and_ci_agree():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci[-1] == "make test"


def test_core_does_not_import_widgets_or_jupyter():
    for path in (ROOT / "dyntie_core").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(widgets|ipywidgets|IPython|ipykernel)", text, re.M), path
