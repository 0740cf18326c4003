"""Figures drawn from a truth document: what they plot is data, tested as data."""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba_array
from matplotlib.figure import Figure

from .outputs import atomic_write_bytes

COVERAGE_HEATMAP_FILE = "coverage_heatmap.png"

# Cell letters of the coverage grid, in colour order; see coverage.GRID_LEGEND.
GRID_STATES = (".", "R", "S", "X", "M")
GRID_COLOURS = ("#f2f2f2", "#2e7d32", "#f9a825", "#c62828", "#6a1b9a")
# Each state's colour as RGBA bytes, indexed by state.
_STATE_RGBA = np.array([to_rgba_array(colour)[0] for colour in GRID_COLOURS]) * 255
_STATE_RGBA = _STATE_RGBA.round().astype(np.uint8)
_MAX_LABELLED_COLUMNS = 120
# Thirty names fill the figure's 16 inches at 7 points; each costs milliseconds to lay out
# and draw, so more would only slow a large audit down.
_MAX_LABELLED_ROWS = 30


def coverage_matrix(grid: Mapping[str, Any]) -> tuple[np.ndarray, list[str], list[str]]:
    """The coverage grid as a matrix of state indices (into ``GRID_STATES``), rows, columns."""
    rows = [row["bench_dir"] for row in grid["rows"]]
    # One lookup over all cells' bytes: a million runs make a million cells.
    letters = np.frombuffer("".join(row["cells"] for row in grid["rows"]).encode("ascii"), np.uint8)
    state_of_letter = np.zeros(256, dtype=np.int8)
    for index, state in enumerate(GRID_STATES):
        state_of_letter[ord(state)] = index
    matrix = state_of_letter[letters].reshape(len(rows), len(grid["columns"]))
    return matrix, rows, list(grid["columns"])


def _plain(label: str) -> str:
    # Matplotlib reads text between two '$' as mathtext and fails on what it cannot parse;
    # control characters have no glyph.
    label = "".join(" " if character < " " else character for character in label)
    # A lone surrogate cannot be drawn (matplotlib raises): shown as its escape.
    label = label.encode("utf-8", "backslashreplace").decode("utf-8")
    return label.replace("$", r"\$")


def plot_coverage_heatmap(grid: Mapping[str, Any]) -> Figure:
    """Bench dirs by configuration and seed, coloured real / superseded / excluded / missing."""
    matrix, rows, columns = coverage_matrix(grid)
    width = min(4 + 0.18 * len(columns), 40)
    height = min(2 + 0.3 * len(rows), 16)
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if matrix.size == 0:
        axes.set_axis_off()
        axes.text(0.5, 0.5, "Coverage: no planned or real runs to show", ha="center")
        return figure

    # Coloured here, a byte a channel: from state indices, matplotlib made the picture
    # through floating-point images, a quarter of drawing a 100k-run heatmap, most of it
    # fresh memory. The pixels are the same.
    axes.imshow(_STATE_RGBA[matrix], aspect="auto", interpolation="nearest")
    # Past a screenful of rows, every k-th dir is named: drawing tens of thousands of
    # labels took longer than the audit itself and left them unreadable anyway.
    step = max(1, -(-len(rows) // _MAX_LABELLED_ROWS))
    labelled = range(0, len(rows), step)
    axes.set_yticks(
        labelled, labels=[_plain(rows[index].rsplit("/", 1)[-1]) for index in labelled], fontsize=7
    )
    if step > 1:
        axes.set_ylabel(f"bench dir ({len(labelled)} of {len(rows)} named, one in {step})")
    if len(columns) <= _MAX_LABELLED_COLUMNS:
        axes.set_xticks(
            range(len(columns)), labels=[_plain(c) for c in columns], fontsize=6, rotation=90
        )
    else:
        axes.set_xticks([])
    axes.set_xlabel("configuration (backbone/fusion_type/module_variant/seed)")
    axes.set_title("Coverage: which planned runs really ran")

    legend = grid["legend"]
    handles = [
        axes.scatter([], [], marker="s", color=colour, label=legend[state])
        for state, colour in zip(GRID_STATES, GRID_COLOURS, strict=True)
        if state in legend
    ]
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    lay_out_once(figure)
    return figure


def lay_out_once(figure: Figure) -> None:
    """Fit the axes around their labels now, and never again.

    ``Figure.tight_layout`` leaves a placeholder layout engine behind, and while the figure
    has one, ``savefig`` lays every text out once more before drawing it: a fifth of the
    time of a large heatmap, for the same result.
    """
    with warnings.catch_warnings():
        # Very long labels leave tight_layout no room; the figure is still drawn.
        warnings.simplefilter("ignore", UserWarning)
        figure.tight_layout()
    figure.set_layout_engine(None)


def coverage_heatmap_png(grid: Mapping[str, Any]) -> bytes:
    """The coverage heatmap of ``grid`` as PNG (see :func:`png_bytes`)."""
    return png_bytes(plot_coverage_heatmap(grid))


def warm_up_heatmap_drawing(legend: Mapping[str, str]) -> None:
    """Draw a small coverage heatmap and throw it away.

    A process's first figure loads the font and fills matplotlib's text caches, which made
    the first heatmap of a 100k-run audit take 0.45 s instead of 0.28 s. A drawer that
    waits while the bench dirs are read does this meanwhile; the PNG drawn after it is the
    same, byte for byte.
    """
    grid = {
        "rows": [{"bench_dir": "runs/warm_up", "cells": "".join(GRID_STATES)}],
        "columns": [f"backbone/fusion/variant/{seed}" for seed in range(len(GRID_STATES))],
        "legend": legend,
    }
    png_bytes(plot_coverage_heatmap(grid))


def write_coverage_heatmap(grid: Mapping[str, Any], path: str) -> None:
    """Draw the coverage heatmap of ``grid`` and write it to ``path`` as PNG, atomically."""
    atomic_write_bytes(path, coverage_heatmap_png(grid))


def png_bytes(figure: Figure) -> bytes:
    """A figure as PNG, without the software stamp, so that reruns are byte-identical."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def save_png(figure: Figure, path: str) -> None:
    """Write a figure as PNG (see :func:`png_bytes`) atomically."""
    atomic_write_bytes(path, png_bytes(figure))


METRICS_PLOT_FILE = "metrics_by_configuration.png"


def metric_plot_data(main_results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per table row: a configuration label, the mean and the seed spread (std, 0 if one seed)."""
    labels = main_results.apply(
        lambda row: (
            f"{row['exp_name']} {row['backbone']}/{row['fusion_type']}/"
            f"{row['module_variant']} edgar={'on' if row['use_edgar'] else 'off'}"
        ),
        axis=1,
    )
    return pd.DataFrame(
        {
            "configuration": labels.astype(str) if len(main_results) else pd.Series(dtype=str),
            "mean": main_results[f"{metric}_mean"].astype(float),
            "spread": main_results[f"{metric}_std"].astype(float).fillna(0.0),
            "n_runs": main_results["n_runs"],
        }
    ).reset_index(drop=True)


def plot_metrics_by_configuration(main_results: pd.DataFrame) -> Figure:
    """Each metric per configuration, with the seeds' sample std as error bars."""
    metrics = ("rmse", "mae", "mse", "r2")
    rows = max(len(main_results), 1)
    figure = Figure(figsize=(min(4 + 0.12 * rows, 60), 11), dpi=100)
    FigureCanvasAgg(figure)

    for index, metric in enumerate(metrics, start=1):
        axes = figure.add_subplot(len(metrics), 1, index)
        data = metric_plot_data(main_results, metric)
        axes.errorbar(
            range(len(data)), data["mean"], yerr=data["spread"], fmt="o", markersize=3, capsize=2
        )
        axes.set_ylabel(metric)
        axes.set_xticks([])
        if index == len(metrics) and len(data) <= _MAX_LABELLED_COLUMNS:
            axes.set_xticks(
                range(len(data)),
                labels=[_plain(label) for label in data["configuration"]],
                rotation=90,
                fontsize=5,
            )
    figure.suptitle("Metrics per configuration (mean, error bars: std over seeds)")
    lay_out_once(figure)
    return figure
