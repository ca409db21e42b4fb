"""The study, the report and the Figure 1 preset on a real image folder, ../shared/data/imagenette-mini (10
ImageNet classes as train/<wnid>/*.JPEG); skipped where it is absent. Tiny budgets: this checks the commands work on
real images, not what they find."""

from __future__ import annotations

import pytest
from conftest import SHARED_DATA
from pictures import assert_picture

from alexnet_cuda.analysis import figure1, study
from alexnet_cuda.analysis.report import make_report

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is not present")
# alexnet-small on 36x36 copies of the images: 2 batches of 8 per epoch, one validation batch.
COMMON = ["--arch", "alexnet-small", "--image-size", "36", "--batch-size", "8", "--val-batches", "1",
          "--stats-images", "16", "--workers", "0", "--device", "cpu", "--no-progress"]
TRAIN_FLAGS = [*COMMON, "--train-batches", "2"]


def test_study_report_and_figure1_on_imagenette_mini(tmp_path):
    out = tmp_path / "study"
    code = study.main(["--variants", "baseline,no-lrn", "--epochs", "1", "--data", str(SHARED_DATA), "--out",
                       str(out), "--", *TRAIN_FLAGS])
    assert code == 0
    assert (out / "results.md").read_text().count("\n| ") == 2
    assert_picture(out / "validation_curves.png")
    result = make_report(out / "baseline", max_images=16)
    for path in result["images"]:
        assert_picture(path)
    assert {p.name for p in result["images"]} == {"curves.png", "conv1_filters.png", "confusion.png"}
    assert "## Confusion on the validation split" in (out / "baseline" / "report.md").read_text()

    code = figure1.main(["--data", str(SHARED_DATA), "--subset", "16", "--lrs", "1", "--max-epochs", "1", "--out",
                         str(tmp_path / "fig1"), "--", *COMMON[4:]])  # the paper's four-layer net, not --arch
    assert code == 0
    assert_picture(tmp_path / "fig1" / "figure1.png")
