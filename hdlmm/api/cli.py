"""Command line: ``hdlmm fit``, ``hdlmm simulate``, ``hdlmm demo``.

Exit codes: 0 success; 2 bad input or usage (one line on stderr, ``--debug`` for the
traceback); 1 an unexpected internal error (please report it, with ``--debug`` output).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

__all__ = ["main"]

EPILOG = """exit codes: 0 success; 2 bad input or usage (one line on stderr; --debug shows
the traceback); 1 unexpected internal error (please report it with --debug output)."""


def _parser():
    parser = argparse.ArgumentParser(
        prog="hdlmm", description="Sparse, high-dimensional linear mixed models.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _fit_parser(sub)
    _simulate_parser(sub)
    demo = sub.add_parser(
        "demo", help="the skscope tutorial's analysis, done right", epilog=EPILOG,
        description="Fit the tutorial's simulated data (m=8, n=15, p=200, q=4, seed 0), "
                    "compare with statsmodels MixedLM and write the figure.")
    demo.add_argument("--out", default="demo_output", help="folder for the figures")
    demo.add_argument("--support-size", type=int, default=None,
                      help="fix k instead of choosing it from the data")
    demo.add_argument("--random-state", type=int, default=0,
                      help="seed of the cross-validation folds")
    for command in sub.choices.values():  # --debug also after the command's name
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the full traceback on errors")
    return parser


def _fit_parser(sub):
    fit = sub.add_parser(
        "fit", help="fit a sparse mixed model to a CSV or Parquet file", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit SparseLMM to DATA with an lme4-style formula, print the summary "
                    "and write coefficients.csv, results.json and the plots to --out.\n"
                    "example: hdlmm fit data.csv --formula 'y ~ . + (1 + t | subject)'")
    fit.add_argument("data", help="CSV (.csv, .tsv, .txt) or Parquet (.parquet) file")
    fit.add_argument("--formula", required=True,
                     help="e.g. 'y ~ x1 + x2 + (1 | g)'; '.' means every other column")
    fit.add_argument("--out", default="hdlmm_output", help="folder for the results")
    fit.add_argument("--sep", default=None, help="CSV delimiter (default ',' or tab)")
    fit.add_argument("--decimal", default=".",
                     help="decimal mark of a CSV (default '.'; ',' for 3,14)")
    fit.add_argument("--support-size", type=int, default=None,
                     help="number of nonzero fixed effects k (default: chosen by EBIC "
                          "and confirmed by grouped CV)")
    fit.add_argument("--family", choices=["gaussian", "binomial", "poisson"],
                     default="gaussian",
                     help="the response's family: gaussian (default, SparseLMM), binomial "
                          "(0/1 or cbind(successes, failures)) or poisson (counts; "
                          "offset(np.log(t)) in the formula for exposures): SparseGLMM")
    fit.add_argument("--force", default=None,
                     help="comma-separated columns or terms kept in the model whatever "
                          "the selection (unpenalised, not counted in k); the formula "
                          "marker force(age + sex) does the same")
    fit.add_argument("--feature-groups", choices=["terms", "columns"], default="terms",
                     help="'terms' (default): a factor's dummies are selected together and "
                          "count once in k; 'columns': each dummy on its own")
    fit.add_argument("--no-progress", action="store_true",
                     help="no progress bars (they show only on a terminal anyway)")
    fit.add_argument("--a", type=float, default=None,
                     help="proxy parameter a (default: chosen by grouped CV)")
    fit.add_argument("--cv", type=int, default=5, help="grouped CV folds (default 5)")
    fit.add_argument("--inference", default="support",
                     help="'support' (default), 'all', 'none', or comma-separated columns")
    fit.add_argument("--level", type=float, default=0.95, help="confidence level")
    fit.add_argument("--p-adjust", choices=["holm", "bh"], default=None,
                     help="multiple-testing adjustment of the p-values")
    fit.add_argument("--missing", choices=["raise", "drop"], default="raise",
                     help="rows with missing values: error (default) or drop with a count")
    fit.add_argument("--random-state", type=int, default=0, help="seed of the CV folds")
    fit.add_argument("--no-plots", action="store_true", help="do not write PNG plots")


def _simulate_parser(sub):
    sim = sub.add_parser(
        "simulate", help="write simulated clustered data and its truth", epilog=EPILOG,
        description="Simulate from a sparse linear mixed model (make_lmm_data) and write "
                    "the data (columns y, g, x0.., z1..) to --out, with the true β, Ψ, σ² "
                    "in <out stem>_truth.json beside it.")
    sim.add_argument("--out", required=True, help="output file (.parquet or .csv)")
    sim.add_argument("--n-clusters", type=int, default=50)
    sim.add_argument("--n-obs", default="5",
                     help="rows per cluster: one number or a range 'lo,hi'")
    sim.add_argument("--n-features", type=int, default=100)
    sim.add_argument("--support-size", type=int, default=3)
    sim.add_argument("--n-re", type=int, default=2,
                     help="random effects: intercept plus slopes (default 2)")
    sim.add_argument("--scale", type=float, default=1.0, help="residual variance σ²")
    sim.add_argument("--seed", type=int, default=0)


def _run_fit(args, argv):
    from hdlmm.api.estimator import SparseLMM
    from hdlmm.api.output import write_results
    from hdlmm.api.params import check_params
    from hdlmm.sources.files import read_table
    from hdlmm.sources.formula import split_bars

    inference = args.inference
    if inference == "none":
        inference = None
    elif inference not in ("support", "all"):
        inference = [c.strip() for c in inference.split(",") if c.strip()]
    if not 0 < args.level < 1:  # the options are checked before any data is read
        raise ValueError(f"--level must be in (0, 1), e.g. 0.95; got {args.level}")
    force = ([c.strip() for c in args.force.split(",") if c.strip()]
             if args.force else None)
    options = dict(support_size=args.support_size, a=args.a, cv=args.cv, force=force,
                   feature_groups=args.feature_groups,
                   progress=False if args.no_progress else None,
                   inference=inference, p_adjust=args.p_adjust,
                   random_state=args.random_state)
    check_params(SparseLMM(**options))
    try:
        group_columns = [c.strip() for _, g, _ in split_bars(args.formula)[1]
                         for c in g.replace("/", ":").split(":")]
    except ValueError:
        group_columns = []  # the formula's own error comes with the fit
    data = read_table(args.data, sep=args.sep, text_columns=group_columns,
                      decimal=args.decimal)
    if args.family != "gaussian":
        _run_glmm(args, argv, data, options)
        return
    model = SparseLMM.from_formula(args.formula, data, missing=args.missing, **options)
    print(model.summary())
    if model.inference_ is not None and args.level != 0.95:
        print(f"\n{args.level:.0%} intervals:\n{model.confint(args.level)}")
    paths = write_results(model, args.out, level=args.level, argv=argv,
                          plots=not args.no_plots)
    print("\nwritten:")
    for p in paths:
        print(f"  {Path(p).resolve()}")


def _run_glmm(args, argv, data, options):
    """``hdlmm fit --family binomial|poisson``: SparseGLMM (with the debiased inference
    of the final working model unless --inference none)."""
    from hdlmm.api.glmm_estimator import SparseGLMM
    from hdlmm.api.output import write_glmm_results

    keep = ("support_size", "a", "cv", "random_state", "progress", "feature_groups",
            "inference", "force")
    model = SparseGLMM.from_formula(args.formula, data, args.family, missing=args.missing,
                                    **{k: v for k, v in options.items() if k in keep})
    print(model.summary())
    paths = write_glmm_results(model, args.out, argv=argv, level=args.level,
                               plots=not args.no_plots)
    print("\nwritten:")
    for p in paths:
        print(f"  {Path(p).resolve()}")


def _parse_n_obs(text):
    try:
        parts = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--n-obs must be a number or 'lo,hi'; got {text!r}") from None
    if len(parts) not in (1, 2):
        raise ValueError(f"--n-obs must be a number or 'lo,hi'; got {text!r}")
    return parts[0] if len(parts) == 1 else tuple(parts)


def _run_simulate(args):
    import pandas as pd

    from hdlmm.api.output import write_table, write_text
    from hdlmm.sources.simulate import make_lmm_data

    d = make_lmm_data(n_clusters=args.n_clusters, n_obs=_parse_n_obs(args.n_obs),
                      n_features=args.n_features, n_re=args.n_re,
                      support_size=args.support_size, scale=args.scale,
                      random_state=args.seed)
    df = pd.DataFrame(d.X, columns=[f"x{j}" for j in range(d.X.shape[1])])
    slopes = [f"z{j}" for j in range(1, d.Z.shape[1])]
    for j, name in enumerate(slopes, start=1):
        df[name] = d.Z[:, j]
    df.insert(0, "g", d.groups)
    df.insert(0, "y", d.y)
    out = Path(args.out)
    write_table(df, out)
    re_terms = " + ".join(["1"] + slopes)
    formula = f"y ~ . + ({re_terms} | g)"
    truth = {"formula": formula, "support": [f"x{j}" for j in d.support],
             "beta": {f"x{j}": float(d.beta[j]) for j in d.support},
             "cov_re": np.asarray(d.cov_re).tolist(), "scale": float(d.scale),
             "n_rows": int(len(df)), "n_clusters": int(args.n_clusters),
             "seed": args.seed}
    truth_path = out.with_name(out.stem + "_truth.json")
    write_text(json.dumps(truth, indent=2), truth_path)
    print(f"wrote {len(df)} rows ({args.n_clusters} clusters, {d.X.shape[1]} features) "
          f"to {out.resolve()}\ntruth: {truth_path.resolve()}\n"
          f"fit it with: hdlmm fit {out} --formula '{formula}'")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    saved_format = warnings.formatwarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.formatwarning = _one_line_warning
            if args.command == "demo":
                from hdlmm.api.demo import run_demo

                run_demo(out=args.out, support_size=args.support_size,
                         random_state=args.random_state)
            elif args.command == "fit":
                _run_fit(args, ["hdlmm"] + argv)
            elif args.command == "simulate":
                _run_simulate(args)
    except KeyboardInterrupt:
        print("hdlmm: interrupted; no output was left half-written", file=sys.stderr)
        return 130
    except (ValueError, ImportError, OSError) as exc:
        if args.debug:
            raise
        print(f"hdlmm: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # an internal error: say so, keep it to one line
        if args.debug:
            raise
        print(f"hdlmm: internal error ({type(exc).__name__}: {exc}); rerun with --debug "
              f"and report it", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = saved_format
    return 0


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"hdlmm: warning: {message}\n"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
