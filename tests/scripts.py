"""The shipped study scripts, run from the tests the two ways that matter.

`run_script` runs one in a fresh process, through its real entry point. Given the address of the Ray
instance the test session holds (the `ray_address` fixture), it joins it, as a driver joins a
cluster, instead of paying about 5 s to start and stop a Ray of its own. `call_script` calls the
script's main() in this process: for bad input, which must fail in one line before Ray, MLflow or
any file is touched, a fresh process would only add the cost of importing torch again.

Neither passes --cache: the session's cache (KDSCALE_CACHE, set by conftest) serves every script, so
a teacher the scripts share is trained once per test session, as it is once per user.
"""
import importlib.util
import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]


def storage_flags(root: Path) -> list[str]:
    return ["--storage", str(root / "results"), "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"]


def run_script(name: str, root: Path, *argv: str, address: str | None = None, timeout: int = 300):
    """studies/NAME.py ARGV in a fresh process with its storage and MLflow under root."""
    join = ["--address", address] if address else []
    return subprocess.run([sys.executable, str(REPO / "studies" / f"{name}.py"), *argv, *join, *storage_flags(root)],
                          capture_output=True, text=True, timeout=timeout, cwd=root)


def load_script(name: str, folder: str = "studies"):
    """A study script (or FOLDER/NAME.py, e.g. a bench script) as a module, its folder on the path, as
    when the script runs."""
    sys.path.insert(0, str(REPO / folder))
    try:
        spec = importlib.util.spec_from_file_location(f"{folder}_{name}", REPO / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / folder))


def call_script(name: str, root: Path, *argv: str):
    """studies/NAME.py's main(ARGV) in this process: returncode, stdout and stderr as run_script gives them."""
    out, err = io.StringIO(), io.StringIO()
    main = load_script(name).main
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([*argv, *storage_flags(root)])
        except SystemExit as exit:  # argparse's own errors exit
            code = exit.code
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def assert_refused(done, message: str, root: Path) -> None:
    """Bad input as the scripts must meet it: exit 2 and one line naming the problem, before Ray
    starts and before anything (MLflow database, results) is written under root."""
    import ray

    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (root / "mlflow.db").exists() and not (root / "results").exists() and not ray.is_initialized()
