"""The finding of an audit in plain words: how many training images were recovered above which
similarity, and what that does and does not mean. Shared by the report and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.evaluation import THRESHOLDS
from service.lifecycle import STOPPED

CLEAR, FAINT = max(THRESHOLDS), min(THRESHOLDS)

CAVEAT_SCORED = (
    "Similarity is SSIM between each training image and its best-matching reconstruction (the "
    "paper's protocol); 1 is identical. Above {clear} a reconstruction is usually recognisable as "
    "the training image; above {faint} it shares its layout and colours. A low count is not proof "
    "that nothing was memorised: a longer run, more images or another method may recover more.")
CAVEAT_UNSCORED = (
    "Without the true training images the similarity cannot be measured: look at the "
    "reconstruction grid, and upload the training images to score it.")


@dataclass(frozen=True)
class Finding:
    headline: str
    detail: str
    caveat: str
    level: str  # "high" (images recovered clearly), "some", "none", "unscored", "not-finished",
    # "failed", "cancelled"


def span_sentence(summary: dict[str, Any] | None) -> str:
    """What the rank of the first layer's change says (SimuDy's ``input_span_rank``): exact
    for an MLP trained by SGD (weight decay taken out), whose change is spanned by its inputs."""
    rank = (summary or {}).get("input_span_rank")
    if not rank:
        return ""
    return (f" The first layer's weight change has rank {rank}: the network was trained on at least "
            f"{rank} linearly independent images, and the reconstructions were kept in the space "
            "they span.")


def finding_for(*, status: str, metrics: dict[str, Any] | None,
                summary: dict[str, Any] | None, error: str | None = None) -> Finding:
    if status in STOPPED:  # no images were kept: there is nothing to look at or score
        headline = ("The job failed: no reconstruction was made." if status == "failed" else
                    "The job was cancelled before it finished: no reconstruction was made.")
        return Finding(headline, f"Error: {error}" if error else "",
                       f"A {status} job says nothing about what the model memorised; submit the "
                       "audit again to get a finding.", status)
    if status != "succeeded":
        return Finding(f"No finding yet: the job is {status}.", "The finding is made when the "
                       "reconstruction has finished.", "", "not-finished")
    if not metrics:
        n = (summary or {}).get("num_images")
        ranking = (summary or {}).get("ranking") or {}
        estimate = ranking.get("estimated_num_images")
        detail = f"{n} images were reconstructed from the weights." if n is not None else ""
        if estimate is not None:
            detail += (f" Ranking by gradient norm marks {estimate} of them as significant "
                       "(likely to match real training images).")
        return Finding("Not scored yet: the reconstruction has not been compared with the true "
                       "training images.", (detail + span_sentence(summary)).strip(), CAVEAT_UNSCORED,
                       "unscored")
    n = int(metrics.get("num_originals", 0))
    clear = int(metrics.get(f"recovered_above_{CLEAR}", 0))
    faint = int(metrics.get(f"recovered_above_{FAINT}", 0))
    mean = metrics.get("ssim_paper_mean")
    if clear:
        headline = (f"{clear} of {n} training images were recovered from the weights with "
                    f"similarity above {CLEAR} ({faint} above {FAINT}).")
        level = "high"
    elif faint:
        headline = (f"{faint} of {n} training images were partly recovered from the weights "
                    f"(similarity above {FAINT}); none above {CLEAR}.")
        level = "some"
    else:
        headline = f"None of the {n} training images was recovered above similarity {FAINT}."
        level = "none"
    detail = f"Mean similarity over all {n} training images: {mean:.3f}." if mean is not None else ""
    return Finding(headline, (detail + span_sentence(summary)).strip(),
                   CAVEAT_SCORED.format(clear=CLEAR, faint=FAINT), level)
