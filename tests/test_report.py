"""radius.report: certified accuracy, ACR, tables and the PNG plot."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radius import report
from radius.results import read_tsv

REPO = Path(__file__).resolve().parents[1]


def test_certified_accuracy_by_hand():
    # inputs: (radius, correct) = (0, wrong/abstain), (0.3, ok), (0.5, ok), (0.5, wrong), (1.2, ok)
    rad = [0.0, 0.3, 0.5, 0.5, 1.2]
    cor = [0, 1, 1, 0, 1]
    acc = report.certified_accuracy(rad, cor, [0.0, 0.3, 0.31, 0.5, 0.51, 1.2, 5.0])
    # counted by hand: correct with radius >= r, over 5 inputs (>= includes equality, Cohen's analyze.py)
    assert acc.tolist() == [3 / 5, 3 / 5, 2 / 5, 2 / 5, 1 / 5, 1 / 5, 0.0]
    # ACR = (0.3 + 0.5 + 1.2) / 5
    assert report.average_certified_radius(rad, cor) == pytest.approx(2.0 / 5, abs=1e-15)


def test_certified_accuracy_matches_brute_force():
    rng = np.random.default_rng(0)
    rad = np.round(rng.exponential(0.5, 200), 2)
    cor = rng.random(200) < 0.8
    grid = np.linspace(0, 3, 61)
    brute = [np.mean(cor & (rad >= r)) for r in grid]
    assert np.allclose(report.certified_accuracy(rad, cor, grid), brute, rtol=0, atol=1e-15)


def test_bad_arrays():
    with pytest.raises(ValueError, match="same shape"):
        report.certified_accuracy([0.1, 0.2], [1], 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        report.average_certified_radius([-0.1], [1])
    with pytest.raises(ValueError, match="style"):
        report.format_table(["a"], [["1"]], style="html")
    with pytest.raises(ValueError, match="no results"):
        report.load_results([])


def _write_cohen_tsv(path, rows):
    """A plain results file as written by Cohen et al.'s certify.py (no metadata line)."""
    with open(path, "w") as f:
        f.write("idx\tlabel\tpredict\tradius\tcorrect\ttime\n")
        for i, (lab, pred, r, c) in enumerate(rows):
            f.write(f"{i}\t{lab}\t{pred}\t{r:.3}\t{c}\t0:00:01.5\n")


def test_table_and_plot_from_cohen_style_files(tmp_path):
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    _write_cohen_tsv(a, [(1, 1, 0.5, 1), (2, 2, 1.0, 1), (3, -1, 0.0, 0), (4, 5, 0.2, 0)])
    _write_cohen_tsv(b, [(1, 1, 0.25, 1), (2, 2, 0.25, 1), (3, 3, 0.1, 1), (4, 4, 0.0, 1)])
    cfg, cols = read_tsv(str(a))
    assert cfg == {} and cols["predict"].tolist() == [1, 2, -1, 5]
    res = report.load_results([str(a), str(b)])
    assert [r.label for r in res] == ["a", "b"]
    header, rows = report.summary_rows(res, [0.0, 0.25, 0.5])
    assert header == ["file", "setting", "method", "inputs", "acc@0", "acc@0.25", "acc@0.5", "ACR", "abstain"]
    assert [r[0] for r in rows] == [str(a), str(b)]  # each row names its source file
    # a: correct radii 0.5, 1.0 -> acc 2/4 at 0, 0.25, 0.5; ACR 1.5/4; one abstention in 4
    assert rows[0][3:] == ["4", "0.500", "0.500", "0.500", "0.3750", "0.250"]
    # b: all correct, radii .25 .25 .1 0 -> acc 1, 0.5, 0; ACR 0.6/4
    assert rows[1][3:] == ["4", "1.000", "0.500", "0.000", "0.1500", "0.000"]
    text = report.format_table(header, rows)
    assert text.splitlines()[0].split() == header
    md = report.format_table(header, rows, "markdown")
    assert md.startswith("| file | setting |") and md.count("\n") == 4
    png = report.plot_certified_accuracy(res, str(tmp_path / "sub" / "p.png"), title="t")
    data = Path(png).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_import_does_not_load_matplotlib():
    code = "import sys, radius.report, radius.cli, radius.pipeline; print('matplotlib' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


@pytest.mark.parametrize("radii", [[float("nan")], [-1.0], [0.5, float("inf")]])
def test_impossible_radii_are_refused(tmp_path, radii):
    a = tmp_path / "a.tsv"
    _write_cohen_tsv(a, [(1, 1, 0.5, 1)])
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        report.summary_rows(report.load_results([str(a)]), radii)
    from radius.cli import main

    assert main(["report", str(a), "--radii", *map(str, radii)]) == 2


def test_summarize_by_hand():
    """radius.summarize: certified accuracy and ACR of certificates (values worked out by hand in the comment)."""
    from types import SimpleNamespace as C

    import radius

    certs = [C(prediction=0, radius=0.5), C(prediction=1, radius=1.0), C(prediction=2, radius=0.2),
             C(prediction=-1, radius=0.0)]
    s = radius.summarize(certs, [0, 0, 2, 1], radii=[0.0, 0.25, 0.5])
    # correct: inputs 0 (r .5) and 2 (r .2) -> acc 2/4, 1/4, 1/4; ACR (0.5 + 0.2) / 4; one abstention
    assert s["certified_accuracy"] == {0.0: 0.5, 0.25: 0.25, 0.5: 0.25}
    assert s["acr"] == pytest.approx(0.175) and s["abstain"] == 0.25 and s["inputs"] == 4
    with pytest.raises(ValueError, match="one entry per certificate"):
        radius.summarize(certs, [0, 0])
