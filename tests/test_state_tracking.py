"""The state-tracking study: its section on hand-made results, its bad input, its --quick run (slow)."""
import numpy as np
import pandas as pd
import pytest

from analysis.sections import render, state_tracking
from kdscale.store import ResultsStore
from tests.scripts import assert_refused, call_script, run_script

IGNORE = -100


def test_accuracy_by_length_by_hand():
    labels = np.array([[1, 2, IGNORE, IGNORE], [0, 0, IGNORE, IGNORE], [3, 1, 2, 0]])
    pred = np.array([[1, 2, 0, 0], [0, 1, 0, 0], [3, 1, 0, 0]])
    frame = state_tracking.accuracy_by_length(pred, labels).set_index("length")
    # length 2: tokens 1, 2 right, 0 right, 0 wrong -> 3/4; sequences: the first only -> 1/2
    assert frame.loc[2, ["sequences", "token_acc", "seq_acc"]].tolist() == [2, 0.75, 0.5]
    assert frame.loc[4, ["sequences", "token_acc", "seq_acc"]].tolist() == [1, 0.75, 0.0]  # 3, 1 right, 2 wrong, 0 right


def one_hot_probs(pred):
    return np.eye(3)[pred]  # [n, T, 3]: the store keeps each token's argmax


def hand_made(tmp_path):
    """Two tasks: on `easy` (part 1 only) model a is right everywhere and b only at length 2; on `kd`,
    lt and kd of one student at kappa 0.5 and 1, kd ahead by 0.1 at 0.5 and behind by 0.05 at 1."""
    labels = np.array([[1, 2, IGNORE, IGNORE], [0, 1, 2, 0]])
    tables = {}
    for task in ("easy", "kd"):
        store, rows = ResultsStore(str(tmp_path), f"st_{task}"), []
        cells = [("a", "lt", 1.0, None), ("b", "lt", 1.0, None)] if task == "easy" else \
            [("b", o, k, None) for o in ("lt", "kd") for k in (0.5, 1.0)]
        for model, objective, kappa, _ in cells:
            for seed in (0, 1, 2):
                trial_id = f"{task}-{model}-{objective}-{kappa}-{seed}"
                pred = labels.clip(min=0).copy()
                if model == "b":
                    pred[1, 3] = 1  # the length-4 sequence fails
                store.write_predictions(trial_id, one_hot_probs(pred), labels)
                acc = 0.6 + (0.1 if kappa == 0.5 else -0.05) * (objective == "kd") + 0.01 * seed
                rows.append({"trial_id": trial_id, "status": "ok", "dataset": task, "n_teacher": 100,
                             "teacher": "fprnn-16", "teacher_id": "t", "teacher_params": 1000,
                             "teacher_test_acc": 0.9, "student": model, "student_params": 500, "kappa": kappa,
                             "objective": objective, "tau": 4.0 if objective == "kd" else np.nan,
                             "tau_squared": True if objective == "kd" else None,
                             "alpha": 0.0 if objective == "kd" else np.nan, "seed": seed, "budget": "steps=10",
                             "test_acc": acc, "test_seq_acc": acc / 2})
        tables[store.uri] = store.add_rows(rows)
    return tables


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_the_section_on_hand_made_results(tmp_path):
    section = state_tracking.section(hand_made(tmp_path), "kd", tmp_path / "out", n_boot=50)
    solves = section.tables["solves"].set_index(["task", "model", "length"])
    assert solves.loc[("easy", "a", 4), "solved"] and solves.loc[("easy", "b", 2), "solved"]
    assert not solves.loc[("easy", "b", 4), "solved"] and solves.loc[("easy", "b", 4), "token_acc"] == 0.75
    assert solves.loc[("easy", "a", 2), "n"] == 3 and solves.loc[("easy", "a", 2), "seq_low"] == 1.0
    pi = section.tables["pi"].set_index("kappa")
    assert pi.loc[0.5, "pi"] == pytest.approx(0.1) and pi.loc[1.0, "pi"] == pytest.approx(-0.05)
    assert pi.loc[0.5, "pi_seq"] == pytest.approx(0.05) and pi.loc[0.5, "n"] == 3
    text = render(section)
    assert "a solves easy at length 2 and easy at 4" in text and "b solves easy, kd at length 2 and none at 4" in text
    assert "PI above 0 (95% CI) at kappa 0.5" in text and "below 0 at 1" in text
    assert all(path.exists() for path in section.figures)


@pytest.mark.parametrize("argv, message", [
    (["--tasks", "s7"], "dataset: unknown 's7'"),
    (["--kappas", "0.5"], "--kappas must include 1"),
    (["--seeds", "0"], "--seeds 0 is invalid"),
])
def test_bad_input_is_one_line_before_compute(tmp_path, argv, message):
    assert_refused(call_script("state_tracking", tmp_path, *argv), message, tmp_path)


@pytest.mark.slow
def test_state_tracking_quick_end_to_end(tmp_path, ray_address):
    done = run_script("state_tracking", tmp_path, "--quick", address=ray_address)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## State tracking: which model solves which task" in done.stdout and "(part 2)" in done.stdout
    table = ResultsStore(str(tmp_path / "results"), "state_tracking_quick_modsum-brackets").table()
    assert len(table) == 24 and set(table["status"]) == {"ok"} and table["test_seq_acc"].between(0, 1).all()
    dense = table[table["student"] == "fprnn-16"]
    assert (dense["fp_iterations"] == 31).all() and table.loc[table["student"] != "fprnn-16", "fp_iterations"].isna().all()
    analysis_dir = tmp_path / "results" / "state_tracking_quick_modsum-brackets" / "analysis"
    assert "(part 1)" in (analysis_dir / "state_tracking.md").read_text()
    assert len(pd.read_csv(analysis_dir / "state_tracking_pi.csv")) == 6  # 3 students x 2 kappas
    assert (analysis_dir / "state_tracking_lengths.png").exists() and (analysis_dir / "report.md").exists()


def test_a_model_keeps_its_colour_in_every_panel_of_the_lengths_figure():
    """The tasks list their models in different orders (the distillation task's teacher first): the
    colour is the model's, not its place in the panel (a stop-37 figure had lstm's line labelled fprnn)."""
    import matplotlib.pyplot as plt

    from analysis.sections.state_tracking import lengths_figure

    rows = [dict(task=task, model=model, length=n, seq_acc=0.5, seq_low=0.4, seq_high=0.6)
            for task, models in (("s3", ("diagrnn-32", "lstm-32", "fprnn-16")),
                                 ("modsum-brackets", ("diagrnn-32", "fprnn-16", "lstm-32")))
            for model in models for n in (8, 16, 32)]
    fig = lengths_figure(pd.DataFrame(rows))
    colours = [{line.get_label(): line.get_color() for line in ax.get_lines()} for ax in fig.axes]
    assert colours[0] == colours[1] and len(set(colours[0].values())) == 3
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["8", "16", "32"]
    assert not fig.axes[0].get_xticklabels(minor=True) or all(not t.get_text() for t in fig.axes[0].get_xticklabels(minor=True))
    plt.close(fig)
