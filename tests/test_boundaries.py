"""The module boundaries of DESIGN: Ray stays in the engine (and the tuner, a Ray Tune search),
MLflow in the tracking module, torch out of `analysis`. Checked on the source's import statements."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {"ray": {"kdscale/engine/__init__.py", "kdscale/engine/session.py", "kdscale/engine/driver.py",
                   "kdscale/engine/workers.py", "kdscale/engine/search.py"},
           "optuna": {"kdscale/engine/search.py"},
           "mlflow": {"kdscale/tracking.py"}}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


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
