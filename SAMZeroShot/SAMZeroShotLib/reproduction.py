"""The paper's table beside ours: ``samzeroshot reproduce``.

Gutiérrez et al., *No More Training: SAM's Zero-Shot Transfer Capabilities for Cost-Efficient
Medical Image Segmentation*, IEEE Access 2024, report SAM ViT-L with their prompt (the strategy
``paper``) on two public data sets, read here as published (:mod:`.layouts`). Ours are the means
of :func:`~.results.summarize` (over scored slices, pooled over cases, union of both lungs), the
paper's convention.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from .files import write_text_atomically

PAPER_MODEL = "SAM ViT-L"
PAPER_CITATION = (
    "Gutiérrez et al., No More Training: SAM's Zero-Shot Transfer Capabilities for Cost-Efficient "
    "Medical Image Segmentation, IEEE Access 2024"
)
#: The strategy ``reproduce`` runs: the paper's own prompt.
STRATEGY = "paper"


#: Per data set (its layout's name): what it is, the command-line option that names it, and the
#: paper's numbers (per cent; ``n_scored_slices`` = slices with lung).
SETS: dict[str, dict] = {
    "covid19-ct-seg": {
        "title": "CT: COVID-19-CT-Seg",
        "option": "--covid-ct",
        "unit": "volumes",
        "paper": {"dice": 94.95, "jaccard": 91.45, "n_cases": 20, "n_scored_slices": 2973},
    },
    "montgomery": {
        "title": "X-ray: Montgomery County",
        "option": "--montgomery",
        "unit": "images",
        "paper": {"dice": 93.19, "jaccard": 87.45, "n_cases": 138, "n_scored_slices": 138},
    },
}
TABLE_JSON, TABLE_MARKDOWN = "table.json", "table.md"


def _percent(value) -> float:
    return round(100.0 * value, 2) if value is not None and not math.isnan(value) else math.nan


def table(summaries: Mapping[str, dict]) -> dict:
    """The table as data: per data set evaluated, the paper's numbers and ours (with what produced
    them)."""
    rows = []
    for layout, summary in summaries.items():
        about = SETS[layout]
        rows.append(
            {
                "data_set": layout,
                "title": about["title"],
                "unit": about["unit"],
                "paper": {**about["paper"], "model": PAPER_MODEL, "strategy": STRATEGY},
                "ours": {
                    "dice": _percent(summary["mean_dice"]),
                    "jaccard": _percent(summary["mean_jaccard"]),
                    "n_cases": summary["n_cases"],
                    "n_scored_slices": summary["n_scored_slices"],
                    "model": summary["model"],
                    "strategy": summary["strategy"],
                    "complete": summary["complete"],
                    "n_failed": len(summary.get("failed", [])),
                    "n_skipped": len(summary.get("skipped", [])),
                },
            }
        )
    return {"paper": PAPER_CITATION, "rows": rows}


def markdown(data: dict) -> str:
    """The table for people: one line for the paper and one for us per data set, and what the
    numbers are."""
    lines = [
        "| data set | by | model | prompts | cases | slices with lung | Dice % | Jaccard % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        for by, numbers in (("paper", row["paper"]), ("ours", row["ours"])):
            unfinished = "" if by == "paper" or numbers["complete"] else " (unfinished)"
            lines.append(
                f"| {row['title'] if by == 'paper' else ''} | {by}{unfinished} | {numbers['model']}"
                f" | {numbers['strategy']} | {numbers['n_cases']} {row['unit']} |"
                f" {numbers['n_scored_slices']} | {numbers['dice']:.2f} |"
                f" {numbers['jaccard']:.2f} |"
            )
    models = sorted({row["ours"]["model"] for row in data["rows"]})
    lines += [
        "",
        f"Paper: {data['paper']}, {PAPER_MODEL}.",
        (
            f"Ours: model {', '.join(models)}, strategy `{STRATEGY}` (the paper's prompt: a point"
            " per lung, a negative point and one box around both lungs, one call per slice), on"
            " the data sets as published."
        ),
        (
            "Prompts come from the reference masks (oracle prompts), as in the paper. Dice and"
            " Jaccard are means over the slices with lung, pooled over all cases, for the union of"
            " both lungs."
        ),
    ]
    return "\n".join(lines) + "\n"


def write(out, summaries: Mapping[str, dict]) -> dict[str, Path]:
    """Write ``table.json`` and ``table.md`` into ``out`` (each replaced whole); their paths."""
    data = table(summaries)
    paths = {"json": Path(out) / TABLE_JSON, "markdown": Path(out) / TABLE_MARKDOWN}
    write_text_atomically(paths["json"], json.dumps(data, indent=2) + "\n")
    write_text_atomically(paths["markdown"], markdown(data))
    return paths
