"""--help says whole things: each script's and command's description is its docstring's whole first
paragraph (never cut mid-sentence), and every flag of the main job has a help text."""
import re

import pytest

from kdscale.studyargs import first_paragraph
from tests.scripts import REPO, load_script

SCRIPTS = sorted(p.stem for p in (REPO / "studies").glob("*.py"))


def description(help_text: str) -> str:
    """The paragraph after the usage lines."""
    return " ".join(help_text.split("\n\n")[1].split())


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_study_scripts_help_opens_with_its_whole_first_paragraph(name):
    module = load_script(name)
    text = module.build_parser().format_help()
    said = description(text)
    assert said == first_paragraph(module.__doc__) and re.search(r"[.?)]$", said), said


def test_the_main_jobs_flags_all_say_what_they_do():
    parser = load_script("model_size").build_parser()
    silent = [action.option_strings[0] for action in parser._actions if action.option_strings and not action.help]
    assert silent == [], silent


def test_kdscale_commands_describe_themselves_whole(capsys):
    from kdscale import cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    said = description(capsys.readouterr().out)
    assert said.endswith("fits a results table.") and "recipe per kappa and objective" in said


def test_first_paragraph_joins_lines_and_stops_at_the_blank_line():
    assert first_paragraph("Does a higher tau help\nat small kappa?\n\n    python x.py\n") == \
        "Does a higher tau help at small kappa?"
