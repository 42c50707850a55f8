"""Progress bars: shown with progress=True (with a total, so a time left), silent by
default when standard error is not a terminal, and never with progress=False."""

import re

import pandas as pd
import pytest

import hdlmm
from hdlmm import SparseLMM


@pytest.fixture(scope="module")
def data():
    return hdlmm.make_lmm_data(n_clusters=30, n_obs=6, n_features=20, random_state=0)


def test_bars_on_the_search_and_the_inference(data, capsys):
    SparseLMM(random_state=0, progress=True, inference="all").fit(data.X, data.y,
                                                                 data.groups, data.Z)
    err = capsys.readouterr().err
    assert "cross-products" in err and "choosing a and k" in err and "inference" in err
    done = re.findall(r"choosing a and k: +\d+%\|.*?\| (\d+)/(\d+)", err)
    assert done and all(int(n) <= int(total) for n, total in done)  # a total: time left
    assert re.search(r"inference: +0%\|.*\| 0/20", err)


@pytest.mark.parametrize("progress", [None, False])
def test_silent_when_not_asked_or_not_a_terminal(data, capsys, progress):
    SparseLMM(random_state=0, progress=progress).fit(data.X, data.y, data.groups, data.Z)
    assert capsys.readouterr().err == ""


def test_bar_on_the_passes_over_a_file(tmp_path, data, capsys):
    pytest.importorskip("pyarrow")
    cols = [f"x{j}" for j in range(20)]
    pd.DataFrame(data.X, columns=cols).assign(y=data.y, g=data.groups).to_csv(
        tmp_path / "d.csv", index=False)
    SparseLMM(random_state=0, progress=True).fit_source(tmp_path / "d.csv", y="y",
                                                        groups="g", chunk_rows=50)
    err = capsys.readouterr().err
    assert "cross-products" in err  # a CSV's first pass: rows read, no total
    assert re.search(rf"inference \(second pass\): +0%\|.*\| 0\.00/{len(data.y)}", err)


def test_no_bar_offers_what_the_fits_use():
    """Without a bar, progress_bar gives an object with tqdm's update, refresh, close and
    total, doing nothing (no tqdm is made)."""
    from hdlmm.core.progress import NoBar, progress_bar

    bar = progress_bar(10, "x", False)
    assert isinstance(bar, NoBar) and bar.total == 10
    bar.total = 3
    bar.update(2)
    bar.refresh()
    bar.close()
