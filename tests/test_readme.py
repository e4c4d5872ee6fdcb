"""The README's set-up commands are the ones CI runs."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup_commands():
    lines = REPO.joinpath("README.md").read_text().splitlines()
    return [line.strip() for line in lines if line.startswith("    python3 -m venv .venv")]


def test_readme_opens_with_two_setup_commands():
    main_job, tests = setup_commands()[:2]
    assert main_job.endswith("python studies/model_size.py")
    assert tests.endswith("python -m pytest -q")


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = setup_commands()[1]
    ci = REPO.joinpath(".ci", "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci]
