"""The figures a user would show: what each draws, checked on its artists."""

import warnings

import numpy as np
import pandas as pd
import pytest

import hdlmm
from hdlmm import SparseLMM

pytest.importorskip("matplotlib")
from hdlmm.api.plots import (  # noqa: E402
    full_cv_results,
    plot_cv_curve,
    plot_path,
    plot_random_effects,
    plot_residuals,
)


@pytest.fixture(scope="module")
def model():
    d = hdlmm.make_lmm_data(n_clusters=40, n_obs=(3, 12), n_features=60, support_size=4,
                            random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SparseLMM(random_state=0).fit(d.X, d.y, d.groups, d.Z)


def test_the_cv_table_covers_every_k_and_agrees_with_the_fit(model):
    full = full_cv_results(model)
    part = model.cv_results_.dropna(subset=["mean"])
    assert full.groupby("a")["mean"].count().min() > model.support_size_ + 5
    merged = part.merge(full, on=["a", "k"], suffixes=("", "_full"))
    assert len(merged) == len(part)
    np.testing.assert_allclose(merged["mean_full"], merged["mean"], rtol=1e-10)


def test_cv_curve_marks_the_choice_over_the_whole_range(model):
    ax = plot_cv_curve(model).axes[0]
    star = [ln for ln in ax.get_lines() if ln.get_marker() == "*"][0]
    assert star.get_xdata()[0] == model.support_size_
    lines = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert max(ln.get_xdata().max() for ln in lines) > model.support_size_ + 5
    assert ax.get_title() and "chosen" in " ".join(t.get_text() for t in
                                                    ax.get_legend().get_texts())


def test_path_lines_are_distinct_and_labelled(model):
    ax = plot_path(model).axes[0]
    selected = [ln for ln in ax.get_lines() if ln.get_label() in
                {f"x{j}" for j in model.support_}]
    assert len(selected) == model.support_.size
    styles = {(tuple(ln.get_color()), ln.get_linestyle()) for ln in selected}
    assert len(styles) == len(selected)
    ticks = ax.get_xticks()
    assert np.allclose(ticks, np.round(ticks))
    assert ax.get_title()


def test_residual_and_qq_plots(model):
    fig = plot_residuals(model)
    left, right = fig.axes
    assert left.collections[0].get_offsets().shape[0] == model.fittedvalues_.size
    theory = right.collections[0].get_offsets()[:, 0]
    assert np.all(np.diff(theory) > 0) and left.get_title() and right.get_title()


def test_caterpillar_plot(model):
    fig = plot_random_effects(model)
    assert len(fig.axes) == model.random_effects_.shape[1]
    shown = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert sorted(shown) == sorted(map(str, model.random_effects_.index))


def test_one_candidate_and_the_cli_outputs(tmp_path):
    sleep = pd.read_csv(__import__("pathlib").Path(__file__).parent / "data" /
                        "sleepstudy.csv")
    m = SparseLMM.from_formula("Reaction ~ Days + (Days | Subject)", sleep, random_state=0)
    plot_cv_curve(m, path=tmp_path / "cv.png")
    plot_path(m, path=tmp_path / "path.png")
    from hdlmm.api.output import write_results

    written = {p.name for p in write_results(m, tmp_path / "out")}
    assert {"cv_curve.png", "coef_path.png", "residuals.png", "random_effects.png"} <= written
