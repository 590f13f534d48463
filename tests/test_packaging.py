"""The install paths (pip, conda, README, CI) must agree with each other."""

import ast
import re
import subprocess
import sys
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


def test_core_does_not_import_widgets_notebooks_or_jupyter():
    paths = list((ROOT / "dyntie_core").rglob("*.py"))
    assert len(paths) > 15
    for path in paths:
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(widgets|notebooks|ipywidgets|IPython|ipykernel)", text, re.M), path


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str = "dyntie_core") -> dict[str, set[str]]:
    """Every import inside the package (module level, function level and TYPE_CHECKING alike)."""
    modules = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                root = base[: len(base) - node.level + 1] if node.level else []
                target = ".".join(root + ([node.module] if node.module else []))
                targets = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def test_the_core_import_graph_has_no_cycle():
    graph = import_graph()
    assert graph["dyntie_core.loop"] >= {"dyntie_core.policies", "dyntie_core.model"}  # the walker sees imports
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    # policies see the loop only through PolicyHost
    assert not any("dyntie_core.loop" in graph[m] for m in graph if m.startswith("dyntie_core.policies"))


def test_subpackages_are_attributes_after_a_plain_import():
    code = ("import dyntie_core as d; print(d.schemes.make_tie_map('cycle', 6, 3), d.policies.available_methods()[0], "
            "d.presets.PRESETS['demo'].name, d.plots.tie_matrix([0])[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["(0,", "1,", "2,", "0,", "1,", "2)", "all-shared", "demo", "[1.0]"]


def test_the_version_is_written_once():
    """pyproject reads the version from ``dyntie_core/_version.py``; no other file may spell it out."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "dyntie_core._version.__version__"}
    source = (ROOT / "dyntie_core" / "_version.py").read_text()
    version = re.search(r'^__version__ = "([^"]+)"$', source, re.M).group(1)
    spelled = [p for p in (ROOT / "dyntie_core").rglob("*.py")
               if p.name != "_version.py" and re.search(rf'["\']{re.escape(version)}["\']', p.read_text())]
    assert spelled == []
    import dyntie_core
    assert dyntie_core.__version__ == version
