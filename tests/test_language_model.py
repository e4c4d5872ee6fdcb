"""The language-model study (studies/language_model.py) and its section (analysis/sections/language_model.py)."""
import math

import pandas as pd
import pytest

from analysis.sections import language_model, render
from kdscale.store import ResultsStore
from tests.scripts import assert_refused, call_script, run_script


def test_lt_flops_to_a_perplexity_by_hand():
    lt = pd.DataFrame({"flops": [1e6, 1e7, 1e8], "ppl": [20.0, 10.0, 12.0]})  # the last is worse: best so far counts
    assert language_model.lt_flops_to(15.0, lt) == (pytest.approx(10 ** 6.5), "interpolated")  # halfway in ppl
    assert language_model.lt_flops_to(10.0, lt) == (pytest.approx(1e7), "interpolated")
    assert language_model.lt_flops_to(9.0, lt) == (math.inf, "lt never reaches it")
    assert language_model.lt_flops_to(25.0, lt) == (1e6, "at or above lt's cheapest point")


def hand_made():
    """Teachers small (gain 4 at kappa 1, 1 at kappa 4: it shrinks) and big (gain 1 at both), 2 seeds;
    kd's FLOPs are lt's plus a teacher's share: small 1.5x, big 10x."""
    rows = []
    for teacher, params, gain, share in (("gpt-8", 100, {1.0: 4.0, 4.0: 1.0}, 0.5), ("gpt-64", 1000, {1.0: 1.0, 4.0: 1.0}, 9.0)):
        for kappa in (1.0, 4.0):
            for seed in (0, 1):
                lt_ppl = (20.0 if kappa == 1 else 10.0) + seed  # lt: 1e6 FLOPs at kappa 1, 4e6 at kappa 4
                common = {"dataset": "text", "n_teacher": 100, "teacher": teacher, "student": "gpt-4",
                          "teacher_params": params, "student_params": 50, "teacher_id": teacher, "kappa": kappa,
                          "seed": seed, "status": "ok", "budget": "epochs=8", "teacher_test_ppl": 5.0,
                          "test_acc": 0.5, "tau_squared": True, "alpha": 0.0}
                rows.append(common | {"trial_id": f"{teacher}-lt-{kappa}-{seed}", "objective": "lt", "tau": math.nan,
                                      "test_ppl": lt_ppl, "flops": 1e6 * kappa})
                rows.append(common | {"trial_id": f"{teacher}-kd-{kappa}-{seed}", "objective": "kd", "tau": 2.0,
                                      "test_ppl": lt_ppl - gain[kappa] + (0.5 if seed else -0.5),
                                      "flops": 1e6 * kappa * (1 + share)})
    return pd.DataFrame(rows)


def test_the_section_on_hand_made_results(tmp_path):
    section = language_model.section(hand_made(), tmp_path)
    gain = section.tables["gain"].set_index(["teacher", "kappa"])
    assert gain.loc[("gpt-8", 1.0), "gain"] == pytest.approx(4.0) and gain.loc[("gpt-8", 4.0), "gain"] == pytest.approx(1.0)
    assert gain.loc[("gpt-8", 1.0), "n"] == 2 and gain.loc[("gpt-8", 1.0), "gain_low"] < 4.0
    trend = section.tables["trend"].set_index("teacher")
    assert trend.loc["gpt-8", "slope"] == pytest.approx(-1.5)  # -3 over two doublings, the same in both seeds
    assert trend.loc["gpt-8", "verdict"] == "shrinks" and trend.loc["gpt-64", "verdict"] == "no clear trend"
    cost = section.tables["cost"].set_index(["teacher", "kappa"])
    # means over seeds: lt 20.5 at 1e6 FLOPs and 10.5 at 4e6; kd of the small teacher at kappa 1: 16.5 at
    # 1.5e6, which lt reaches 0.4 of the way from 20.5 to 10.5, at 10^(6 + 0.4 log10 4) FLOPs
    assert cost.loc[("gpt-8", 1.0), "flops_lt"] == pytest.approx(10 ** (6 + 0.4 * math.log10(4)))
    assert cost.loc[("gpt-8", 1.0), "ratio"] == pytest.approx(1.5e6 / 10 ** (6 + 0.4 * math.log10(4)))
    assert cost.loc[("gpt-8", 4.0), "read"] == "lt never reaches it" and cost.loc[("gpt-8", 4.0), "cheaper"]
    cheaper = section.tables["cheaper"].set_index("teacher")
    assert cheaper.loc["gpt-8", "cheaper_at"] == 2 and cheaper.loc["gpt-8", "kd_cheaper"]
    assert cheaper.loc["gpt-64", "cheaper_at"] == 1 and not cheaper.loc["gpt-64", "kd_cheaper"]  # 10x at kappa 1
    assert list(section.tables["cheaper"]["teacher"]) == ["gpt-8", "gpt-64"]  # from the smallest teacher
    text = render(section)
    assert "gpt-8: G changes by -1.500 [" in text and "(shrinks)" in text
    assert "gpt-8: yes (cheaper at 2 of 2 perplexities); gpt-64: no (cheaper at 1 of 2 perplexities)" in text
    assert all(path.exists() for path in section.figures)


@pytest.mark.parametrize("argv, message", [
    (["--kappas", "0.5", "-1"], "trial.kappa=-1.0 is invalid"),
    (["--seeds", "0"], "--seeds 0 is invalid"),
    (["--teachers", "gpt:width=30,heads=4"], "heads=4 is invalid for gpt of width 30"),
    (["--student", "mlp:width=8"], "'mlp' is invalid for token inputs"),
    (["--kappas", "1000"], "maximum kappa"),
])
def test_bad_input_is_one_line_before_compute(tmp_path, argv, message):
    assert_refused(call_script("language_model", tmp_path, *argv), message, tmp_path)


@pytest.mark.slow
def test_language_model_quick_end_to_end(tmp_path, ray_address):
    done = run_script("language_model", tmp_path, "--quick", address=ray_address)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## Language models: perplexity against kappa" in done.stdout and "## Perplexity against FLOPs" in done.stdout
    table = ResultsStore(str(tmp_path / "results"), "language_model_quick").table()
    assert len(table) == 8 and set(table["status"]) == {"ok"}  # 2 teachers x 2 kappas x (lt, kd)
    assert (table["test_ppl"] - table["test_loss"].map(math.exp)).abs().max() < 1e-9
    assert table["teacher_test_ppl"].between(1, 73).all()
    kd, lt = table[table["objective"] == "kd"], table[table["objective"] == "lt"]
    assert (kd.set_index(["teacher", "kappa"])["flops"].sort_index() >
            lt.set_index(["teacher", "kappa"])["flops"].sort_index()).all()  # rows come in the packs' order
    analysis_dir = tmp_path / "results" / "language_model_quick" / "analysis"
    assert len(pd.read_csv(analysis_dir / "language_model_cost.csv")) == 4
    assert (analysis_dir / "language_model_flops.png").exists() and (analysis_dir / "report.md").exists()
