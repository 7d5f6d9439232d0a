"""What `evaluate` measured, as JSON (`doc`) and as the table it prints; the plots read it too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_inspect.datasets.contamination import CONTAMINATION_FILE
from edge_inspect.decision.calibration_file import MARGIN
from edge_inspect.evaluation.testset import TestImage


@dataclass
class EvalReport:
    """Everything ``evaluate`` measured: ``doc`` is the JSON, ``lines()`` the stdout table."""

    doc: dict[str, Any]
    items: list[TestImage] = field(default_factory=list)
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    def lines(self) -> list[str]:
        d = self.doc
        ts = d["test_set"]
        kinds = ", ".join(f"{k} {n}" for k, n in ts["by_type"].items())
        head = f"test set {d['data']}: {ts['good']} good, {ts['defect']} defect ({kinds})"
        if ts["excluded_contaminated"]:
            head += f"; {ts['excluded_contaminated']} images left out (trained on them: {CONTAMINATION_FILE})"
        model = (f"model {d['model']} ({d['model_family']}, {d['data_mode']} {d['isize']} px, {d['nc']} ch); "
                 f"validation threshold = max of {d['validation']['n']} held-out good tiles + {MARGIN:.0%}")
        out = [head, model, ""]
        out.append(f"{'score':14s} {'AUROC':>6s} {'AUPR':>6s} {'F1max':>6s} {'@thr':>10s} {'val_thr':>10s} "
                   f"{'F1@val':>6s} {'TPR@val':>7s} {'FPR@val':>7s} {'pxAUROC':>7s} {'mIoU':>6s}")
        for name, m in d["scores"].items():
            mark = "*" if name == d["decision_score"] else " "
            out.append(f"{name + mark:14s} {m['auroc']:6.3f} {m['aupr']:6.3f} {m['f1_max']:6.3f} "
                       f"{m['f1_max_threshold']:10.4g} {m['val_threshold']:10.4g} {m['f1_at_val']:6.3f} "
                       f"{m['tpr_at_val']:7.3f} {m['fpr_at_val']:7.3f} {_fmt(m['pixel_auroc'], 7)} "
                       f"{_fmt(m['iou_mean'], 6)}")
        types = list(ts["by_type"])
        widths = [max(10, len(t)) for t in types]  # whole type names: "black_stain", not "black_stai"
        out.append("")
        out.append(f"{'AUROC by type':14s} " + " ".join(f"{t:>{w}s}" for t, w in zip(types, widths)))
        for name, m in d["scores"].items():
            out.append(f"{name:14s} " + " ".join(f"{m['per_type'][t]['auroc']:{w}.3f}" for t, w in zip(types, widths)))
        out.append("")
        out.append("* decision score. F1max and its threshold are chosen on the test labels (an upper "
                   "bound); F1/TPR/FPR@val use the validation threshold.")
        px = d["pixel"]
        if px is not None:
            extra = [f"{px['images']} images", f"{px['pixels_sampled']} pixels sampled"]
            if px["defect_images_without_mask"]:
                extra.append(f"{px['defect_images_without_mask']} defect images without a mask left out")
            if px["empty_masks"]:
                extra.append(f"{px['empty_masks']} defect images with an empty mask left out")
            out.append(f"pixel map: {px['map']} ({', '.join(extra)})")
        else:
            out.append("pixel metrics: none (no ground_truth masks for the defect images)")
        return out


def _fmt(v: float | None, width: int) -> str:
    return f"{'-':>{width}s}" if v is None else f"{v:{width}.3f}"
