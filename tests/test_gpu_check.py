"""bench/gpu_check.py, the one-call GPU check (issue 21), and its parts in bench/gpucheck/, at the
smallest size on the CPU.

Every part runs in this process and leaves numbers (or a note saying why not) in the JSON (slow);
Ray, MLflow and Optuna stay out of sys.modules; a budget too small skips or cuts parts with a note;
`--device cuda` without a GPU is one line and exit 2.
"""
import importlib
import json
import math
import sys
import time
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def gpu_check():
    """The script as a module (it puts bench/, and with it the gpucheck package, on sys.path)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    module = importlib.import_module("gpu_check")
    from gpucheck.common import import_error

    import_error("mnist1d")  # its first import (scipy: about a second) here, not in a test's budget
    return module


def _numbers(value) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


# The figure each part must hold when it ran: a path into its JSON object.
KEY_FIGURES = {
    "environment": ("matmul", "tflops", "fp32"),
    "trial": ("fp32", "student", "test_acc"),
    "throughput": ("rows", 0, "students_per_hour"),
    "grid": ("students_per_hour",),
    "pack_threshold": ("models", 0, "ratio"),
    "projection": ("total", "paper_gpu_hours"),
    "paths": ("passed",),
}


@pytest.mark.slow
def test_every_part_in_process(gpu_check, tmp_path):
    before = {name for name in gpu_check.FORBIDDEN if name in sys.modules}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = gpu_check.run_check(tmp_path, device="cpu", budget_s=120, size="tiny", echo=False,
                                   started=time.perf_counter())
    finally:
        torch.set_num_threads(threads)
    on_disk = json.loads((tmp_path / "gpu_check.json").read_text())
    assert on_disk["parts"].keys() == set(gpu_check.PARTS)
    assert (tmp_path / "gpu_check.log").read_text().count("[") >= len(gpu_check.PARTS)
    for part in gpu_check.PARTS:
        fig = on_disk["parts"][part]
        assert fig["status"] in ("ok", "partial", "skipped"), (part, fig.get("note"))
        assert fig["wall_s"] >= 0
        if fig["status"] == "skipped":
            assert fig["note"]
            continue
        value = fig
        for key in KEY_FIGURES[part]:
            value = value[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, (part, value)
        assert _numbers(fig)
    assert on_disk["parts"]["trial"]["status"] == "ok"  # mnist1d is installed here: the real trial ran
    assert isinstance(on_disk["parts"]["trial"]["bf16_within_0.05"], bool)
    assert on_disk["parts"]["projection"]["total"]["kdscale_pflop"] > 0
    paths = on_disk["parts"]["paths"]  # every trainer path, packed against alone
    assert paths["failed"] == [] and paths["passed"] == len(paths["cases"]) >= 10
    assert data["total_wall_s"] <= 120
    # nothing the check ran imported Ray, MLflow or Optuna, and the JSON says so
    newly = {name for name in gpu_check.FORBIDDEN if name in sys.modules} - before
    assert not newly
    imports = on_disk["forbidden_imports"]
    assert set(imports["already_imported_by_the_caller"]) == before
    if not before:
        assert imports["none_imported"] is True


def test_budget_skips_with_a_note(gpu_check, tmp_path):
    """A budget too small for any part: every part is skipped with a note, and the JSON is whole."""
    from gpucheck.common import clean

    data = gpu_check.run_check(tmp_path, device="cpu", budget_s=2.0, size="tiny", echo=False,
                               started=time.perf_counter())
    on_disk = json.loads((tmp_path / "gpu_check.json").read_text())
    assert on_disk == json.loads(json.dumps(clean(data)))
    assert all(on_disk["parts"][p]["status"] in ("skipped", "cut", "ok") for p in gpu_check.PARTS)
    assert any(on_disk["parts"][p]["status"] in ("skipped", "cut") for p in gpu_check.PARTS)
    assert all(on_disk["parts"][p].get("note") for p in gpu_check.PARTS if on_disk["parts"][p]["status"] != "ok")
    assert data["total_wall_s"] <= 2.5


def test_a_part_past_its_share_is_cut_at_the_deadline(gpu_check, tmp_path, monkeypatch):
    """With every estimate zero, nothing is skipped in advance: the timer cuts what overruns (the
    environment part, at its share's end half a second in), and the rest is skipped."""
    import gpucheck
    from gpucheck.budget import Costs

    monkeypatch.setattr(Costs, "train_s", lambda self, *args, **kwargs: 0.0)
    monkeypatch.setattr(gpucheck, "smallest_estimate", lambda ck, part: 0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = gpu_check.run_check(tmp_path, device="cpu", budget_s=1.5, size="quick", echo=False,
                                   started=time.perf_counter())
    finally:
        torch.set_num_threads(threads)
    on_disk = json.loads((tmp_path / "gpu_check.json").read_text())
    statuses = [on_disk["parts"][p]["status"] for p in gpu_check.PARTS]
    assert "cut" in statuses, statuses
    assert data["total_wall_s"] <= 2.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line_and_exit_2(gpu_check, tmp_path, capsys):
    out = tmp_path / "out"
    assert gpu_check.main(["--device", "cuda", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and "--device cuda" in captured.err
    assert not out.exists()  # before any compute, and before any file


def test_device_command_is_in_the_docstring_and_the_benchmarks(gpu_check):
    """The command as it ran on an H200: mnist1d's wheel carried and installed, then the script."""
    command = gpu_check.__doc__.split("    run(command=", 1)[1].split(")\n", 1)[0]
    assert "bench/gpu_check.py" in command and "--out $OUT --device cuda" in command
    assert 'carry=[".whl"]' in command and "--target /tmp/site .whl/*.whl" in command
    benchmarks = (Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md").read_text()
    assert "    run(command=" + command + ")" in benchmarks
