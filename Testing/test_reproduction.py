"""The paper's table beside ours: `samzeroshot reproduce` on the two data sets as published."""

import json

# The cases the covid_set fixture (conftest.py) lays out.
CORONACASE, RADIOPAEDIA = "coronacases_001", "radiopaedia_4_85506_1"


def test_reproduce_writes_the_papers_table_beside_ours(
    samzeroshot, capsys, montgomery_set, covid_set, tmp_path
):
    out = tmp_path / "reproduction"
    code, stdout, stderr = samzeroshot(
        "reproduce", "--montgomery", montgomery_set, "--covid-ct", covid_set, "--out", out
    )
    assert code == 0, stderr
    assert "the paper's prompt (strategy paper) with model litemedsam" in stderr
    summaries = {
        name: json.loads((out / name / "summary.json").read_text())
        for name in ("montgomery", "covid19-ct-seg")
    }
    assert (
        summaries["montgomery"]["n_cases"] == 2 and summaries["montgomery"]["n_scored_slices"] == 2
    )
    assert (
        summaries["covid19-ct-seg"]["n_cases"] == 2
        and summaries["covid19-ct-seg"]["n_scored_slices"] == 6
    )
    assert all(s["strategy"] == "paper" and s["complete"] for s in summaries.values())
    assert summaries["covid19-ct-seg"]["case_settings"] == {
        CORONACASE: {"window": "ct-lung"},
        RADIOPAEDIA: {"window": "xray"},
    }

    table = json.loads((out / "table.json").read_text())
    rows = {row["data_set"]: row for row in table["rows"]}
    assert rows["covid19-ct-seg"]["paper"] == {
        "dice": 94.95,
        "jaccard": 91.45,
        "n_cases": 20,
        "n_scored_slices": 2973,
        "model": "SAM ViT-L",
        "strategy": "paper",
    }
    assert (
        rows["montgomery"]["paper"]["dice"] == 93.19
        and rows["montgomery"]["paper"]["jaccard"] == 87.45
    )
    assert rows["montgomery"]["paper"]["n_cases"] == 138
    for name, summary in summaries.items():
        ours = rows[name]["ours"]
        assert (
            ours["model"] == "litemedsam" and ours["strategy"] == "paper" and ours["n_cases"] == 2
        )
        assert ours["dice"] == round(100 * summary["mean_dice"], 2)
        assert ours["jaccard"] == round(100 * summary["mean_jaccard"], 2)
    markdown = (out / "table.md").read_text()
    for text in (
        "94.95",
        "91.45",
        "2973",
        "93.19",
        "87.45",
        "138 images",
        "SAM ViT-L",
        "litemedsam",
        "oracle prompts",
        f"{rows['montgomery']['ours']['dice']:.2f}",
    ):
        assert text in markdown, text
    assert markdown in stdout
