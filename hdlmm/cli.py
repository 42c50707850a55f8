"""Command line: ``hdlmm demo``.

Exit codes: 0 success, 2 bad input or usage (one line on stderr; ``--debug`` for the
traceback).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _parser():
    parser = argparse.ArgumentParser(
        prog="hdlmm", description="Sparse, high-dimensional linear mixed models.")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="the skscope tutorial's analysis, done right",
        description="Fit the tutorial's simulated data (m=8, n=15, p=200, q=4, seed 0), "
                    "compare with statsmodels MixedLM and write the figure.")
    demo.add_argument("--out", default="demo_output", help="folder for the figure")
    demo.add_argument("--support-size", type=int, default=None,
                      help="fix k instead of choosing it from the data")
    demo.add_argument("--random-state", type=int, default=0,
                      help="seed of the cross-validation folds")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo(out=args.out, support_size=args.support_size,
                     random_state=args.random_state)
    except (ValueError, ImportError, OSError) as exc:
        if args.debug:
            raise
        print(f"hdlmm: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
