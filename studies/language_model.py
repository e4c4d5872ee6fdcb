"""Does distillation's gain in perplexity shrink as kappa grows, and is kd cheaper than lt in FLOPs to a
given perplexity, for GPT teachers of three sizes? (the paper's Figs. 2 and 3, at CPU size)

    python studies/language_model.py          # 3 teachers, 5 kappas, 2 seeds
    python studies/language_model.py --quick  # smoke size: 2 teachers, 2 kappas, 1 seed, tiny models

Data: `text` (kdscale/data/text.py), the King James Bible as characters (73 tokens), windows of
T = 32 characters that predict the next character at every position; N = 2000 windows (64,000
tokens) for the teachers, M = kappa N for the students, kappa = student tokens / teacher tokens in
0.25, 0.5, 1, 2, 4; the test set is 500 windows spread over the corpus. Teachers: gpt-32, gpt-64
and gpt-128 (2 blocks, 4 heads; 31k, 112k and 420k parameters), trained with labels. Student:
gpt-32 with 1 block (18.5k parameters), lt against kd (tau = 2, tau^2 factor, alpha = 0) from
each teacher. Printed (analysis/sections/language_model.py): test perplexity per teacher and kappa,
the gain ppl(lt) - ppl(kd) paired by seed with its trend in kappa, and perplexity against FLOPs
(the teacher's forward passes over the student's tokens counted) with, per teacher, whether kd
reaches each perplexity for fewer FLOPs than lt.
Recipes: fixed, not searched (the project's default is fair): AdamW lr 2e-3, weight decay 0.1,
batches of 32 windows, cosine after a warm-up; teachers 24 epochs, students 8 epochs of their own M
windows (recipes.py `text-teacher`, `text-student`): a budget in epochs, as the paper's language
models, so a student's FLOPs grow with kappa. A recipe search (kdscale.search) would put its step
budgets in their place, which this study's FLOPs axis cannot have (--recipe is not a flag of it).

Cost here (2-core CPU shared with other jobs): see README, "Studies".
Answer here: see README, "Studies", and docs/studies.md.
"""
from __future__ import annotations

import argparse
import sys

from analysis.sections import language_model
from kdscale.config import DataSpec, ModelSpec
from kdscale.recipes import study_recipes
from kdscale.study import StudySpec
from kdscale.studyargs import Grid, StudyParser, add_run_flags, finish, resources, run

TEACHERS = ("gpt:width=32,depth=2,heads=4", "gpt:width=64,depth=2,heads=4", "gpt:width=128,depth=2,heads=4")
STUDENT = "gpt:width=32,depth=1,heads=4"
QUICK_TEACHERS = ("gpt:width=16,depth=1,heads=2", "gpt:width=32,depth=1,heads=4")
QUICK_STUDENT = "gpt:width=16,depth=1,heads=2"
LENGTH, N, QUICK_LENGTH, QUICK_N, QUICK_N_TEST = 32, 2000, 16, 200, 100
QUICK_TEACHER_EPOCHS, QUICK_STUDENT_EPOCHS = 4, 2
GRID = Grid("language_model", kappas=(0.25, 0.5, 1.0, 2.0, 4.0), seeds=2,
            quick=dict(teachers=QUICK_TEACHERS, kappas=(0.5, 2.0), seeds=1))


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
    GRID.add_flags(parser)
    parser.add_argument("--teachers", nargs="+", help=f"teacher models (default {' '.join(TEACHERS)})")
    parser.add_argument("--student", help=f"student model (default {STUDENT})")
    parser.add_argument("--tau", type=float, default=2.0, help="kd's temperature (tau^2 factor on, alpha 0; default 2)")
    parser.add_argument("--n-teacher", type=int, help=f"N, the teachers' windows (default {N}; --quick {QUICK_N})")
    parser.add_argument("--length", type=int, help=f"T, tokens a window predicts (default {LENGTH}; --quick {QUICK_LENGTH})")
    add_run_flags(parser, recipes=False)
    return parser


def build_spec(args: argparse.Namespace) -> StudySpec:
    """The study's grid (bad input raises SpecError, before any compute)."""
    teacher_recipe, student_recipe = study_recipes("text")
    if args.quick:  # no other study shares these trials: smoke budgets of their own
        teacher_recipe = teacher_recipe.with_budget(epochs=QUICK_TEACHER_EPOCHS)
        student_recipe = student_recipe.with_budget(epochs=QUICK_STUDENT_EPOCHS)
    length = args.length or (QUICK_LENGTH if args.quick else LENGTH)
    n = args.n_teacher or (QUICK_N if args.quick else N)
    student = ModelSpec.parse(args.student or (QUICK_STUDENT if args.quick else STUDENT))
    teachers = args.teachers or GRID.get(args, "teachers", TEACHERS)
    data = DataSpec("text", n_teacher=n, n_test=QUICK_N_TEST if args.quick else None,
                    options=(("corpus", "kjv"), ("length", length), ("tokens", "char")))
    return StudySpec(name=GRID.study_name(args), data=data,
                     pairs=tuple((ModelSpec.parse(t), student) for t in dict.fromkeys(teachers)),
                     kappas=GRID.kappa_values(args), taus=(args.tau,), objectives=("lt", "kd"),
                     seeds=GRID.seed_values(args), recipe=student_recipe, teacher_recipe=teacher_recipe,
                     resources=resources(args), recipe_policy="fixed")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(build_spec, args, "language_model")
    return finish(result, args, lambda out_dir: language_model.section(result.table, out_dir))


if __name__ == "__main__":
    sys.exit(main())
