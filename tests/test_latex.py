"""main_results.tex: escaping, mean and std, bold best, and (given TeX) that it compiles."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from benchtruth_utils.figures import metric_plot_data
from benchtruth_utils.latex import escape_latex, latex_document, main_results_latex
from benchtruth_utils.tables import main_results_frame


def run(seed, rmse, backbone="gated_attn", r2=0.5):
    return {
        "exp_name": "main_v2",
        "backbone": backbone,
        "fusion_type": "none",
        "module_variant": "base",
        "use_edgar": False,
        "seed": seed,
        "rmse": rmse,
        "mae": 0.25,
        "mse": 0.25,
        "r2": r2,
    }


FRAME = main_results_frame([run(0, 0.5), run(1, 0.7), run(0, 0.4, backbone="tcn&100%", r2=0.9)])


def test_escape_latex_makes_text_cells_safe():
    assert escape_latex("gated_attn") == r"gated\_attn"
    assert escape_latex("a&b%c$d#e{f}g~h^i\\") == (
        r"a\&b\%c\$d\#e\{f\}g\textasciitilde{}h\textasciicircum{}i\textbackslash{}"
    )


def test_main_results_latex_rows_std_and_bold_best():
    lines = main_results_latex(FRAME, decimals=2).splitlines()

    assert lines[1] == r"\begin{tabular}{lllllrrrrr}"
    assert lines[3].startswith(r"exp\_name & backbone")
    assert lines[5] == (
        r"main\_v2 & gated\_attn & none & base & no & $0.60 \pm 0.14$ & $0.25 \pm 0.00$ "
        r"& $0.25 \pm 0.00$ & $0.50 \pm 0.00$ & 2 \\"
    )
    # One seed: no std. Lowest rmse and highest r2 of the experiment: bold. mae ties: not bold.
    assert lines[6] == (
        r"main\_v2 & tcn\&100\% & none & base & no & $\mathbf{0.40}$ & $0.25$ & $0.25$ "
        r"& $\mathbf{0.90}$ & 1 \\"
    )
    assert lines[-2:] == [r"\bottomrule", r"\end{tabular}"]


def test_metric_plot_data_has_one_point_per_row_with_spread():
    data = metric_plot_data(FRAME, "rmse")

    assert list(data["mean"]) == pytest.approx([0.6, 0.4])
    assert list(data["spread"]) == pytest.approx([0.1414213562373095, 0.0])
    assert data["configuration"][0] == "main_v2 gated_attn/none/base edgar=off"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX engine on this machine")
def test_main_results_latex_compiles(tmp_path):
    (tmp_path / "table.tex").write_text(latex_document(main_results_latex(FRAME)))

    completed = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table.tex"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stdout[-2000:]
