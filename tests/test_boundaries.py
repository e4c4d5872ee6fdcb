"""The module boundaries of DESIGN: Ray stays in the engine (and the tuner, a Ray Tune search),
MLflow in the tracking module, torch out of `analysis`. Checked on the source's import statements."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {"ray": {"kdscale/engine/__init__.py", "kdscale/engine/session.py", "kdscale/engine/driver.py",
                   "kdscale/engine/workers.py", "kdscale/engine/searches.py", "kdscale/engine/trials.py",
                   "kdscale/engine/checks.py"},
           "optuna": set(),
           "mlflow": {"kdscale/tracking/__init__.py", "kdscale/tracking/client.py", "kdscale/tracking/study.py",
                      "kdscale/tracking/searches.py"}}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_heavy_frameworks_are_imported_only_where_the_design_allows():
    offenders = []
    for path in sorted([*REPO.glob("kdscale/**/*.py"), *REPO.glob("analysis/**/*.py"), *REPO.glob("studies/*.py")]):
        relative = path.relative_to(REPO).as_posix()
        for package in imported_packages(path) & set(ALLOWED):
            if relative not in ALLOWED[package]:
                offenders.append(f"{relative} imports {package}")
        if relative.startswith("analysis/") and "torch" in imported_packages(path):
            offenders.append(f"{relative} imports torch")
    assert not offenders, offenders


def test_the_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from ray import tune\n    import mlflow.entities\n")
    assert imported_packages(source) == {"ray", "mlflow"}


# --- which module imports which: one direction, no circles ------------------------------------

PACKAGES = ("kdscale", "analysis")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports anywhere in it (module level or inside functions);
    `from package import name` counts as importing the submodule package.name where there is one."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported_modules(path, set(modules)) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for other in sorted(graph.get(node, ())):
            if state.get(other) == 1:
                return path[path.index(other):] + [other]
            if other not in state:
                cycle = visit(other)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None
    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_module_imports_itself_through_others():
    # A package's __init__ re-exporting its submodules is the one allowed loop: the submodule does not
    # import the package for a name, it only lives in it. Every other circle is a design error.
    graph = import_graph()
    for name in graph:
        graph[name] = {other for other in graph[name] if not name.startswith(other + ".")}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_analysis_knows_only_the_schema_of_kdscale():
    graph = import_graph()
    wrong = {f"{name} imports {other}" for name, others in graph.items() if name.startswith("analysis")
             for other in others if other.startswith("kdscale") and other not in ("kdscale", "kdscale.schema")}
    assert not wrong, sorted(wrong)
    assert graph["kdscale"] == set() and graph["kdscale.schema"] == set()  # both import nothing of the project
    # and kdscale calls analysis only from the places that run studies or the command line
    callers = {name for name, others in graph.items() if name.startswith("kdscale")
               and any(o.startswith("analysis") for o in others)}
    assert callers <= {"kdscale.cli", "kdscale.studyargs", "kdscale.adaptive"}, callers


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_importing_analysis_loads_no_torch_ray_mlflow_or_kdscale_beyond_the_schema():
    import subprocess
    import sys

    code = ("import sys, analysis, analysis.report, analysis.sections, pkgutil, importlib\n"
            "for m in pkgutil.iter_modules(analysis.sections.__path__):\n"
            "    importlib.import_module('analysis.sections.' + m.name)\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'ray', 'mlflow', 'optuna', 'kdscale'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["kdscale", "kdscale.schema"], done.stdout
