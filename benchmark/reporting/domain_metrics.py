"""The domains' own metrics, computed by ``pysodmetrics`` (py_sod_metrics), the library the
camouflaged/salient-object literature evaluates with, beside IoU/Dice/MAE.

A stream YAML names a domain's extra metrics (``{name: camouflage, metrics: [s_measure, ...]}``).
The prediction is scored as those papers score a saved prediction map: ``sigmoid(logits)`` as an
8-bit image (pysodmetrics min-max normalises it, as the MATLAB toolboxes do) against the mask as
0/255. Each metric turns one image into a vector of statistics; a domain's value reduces the sum
of its images' vectors, so shards (torchrun) add up exactly:

* ``s_measure``  structure measure S_alpha (Fan et al. 2017), mean over images; higher is better
* ``e_measure``  mean enhanced-alignment measure E_phi (Fan et al. 2018): the mean over the 256
  thresholds of the per-image curve, mean over images (pysodmetrics' ``em["curve"].mean()``)
* ``wf_measure`` weighted F-measure F^w_beta (Margolin et al. 2014), mean over images
* ``ber``        balanced error rate of the shadow-detection literature, 1 - (TPR + TNR) / 2 from
  the true/false positives and negatives summed over the domain's images (not a mean of
  per-image rates), at 0.5 on the normalised map; lower is better

Values are fractions in [0, 1]; tables show them x100 (BER in percent, as its papers do).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np

from scenarios.fileio import ConfigError


@dataclass(frozen=True)
class DomainMetric:
    label: str
    higher_is_better: bool
    stats: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (pred uint8, gt uint8) -> vector
    reduce: Callable[[np.ndarray, int], float]             # (summed vectors, images) -> value
    width: int = 1                                          # length of the statistics vector


def _sod():
    import py_sod_metrics  # imported on first use: only runs whose streams declare these need it

    return py_sod_metrics


def _pysod(class_name: str, key: str, pick=lambda v: v):
    """``stats`` of one pysodmetrics class: its result ``key`` for a single image."""
    def stats(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        m = getattr(_sod(), class_name)()
        m.step(pred=pred, gt=gt)
        return np.array([float(pick(m.get_results()[key]))])
    return stats


def _mean(total: np.ndarray, count: int) -> float:
    return float(total[0] / count) if count else float("nan")


def _confusion(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    sod = _sod()
    pred, gt = sod.utils.prepare_data(pred, gt)
    fg = int(np.count_nonzero(gt))
    c = sod.FmeasureV2.get_statistics(pred > 0.5, gt, FG=fg, BG=gt.size - fg)
    return np.array([c["tp"], c["fp"], c["tn"], c["fn"]], dtype=np.float64)


def _ber(total: np.ndarray, count: int) -> float:
    if not count:
        return float("nan")
    handler = _sod().BERHandler(with_dynamic=False, with_adaptive=False, with_binary=True,
                                sample_based=False)
    tp, fp, tn, fn = total
    return float(handler(tp=tp, fp=fp, tn=tn, fn=fn))


DOMAIN_METRICS: Dict[str, DomainMetric] = {
    "s_measure": DomainMetric("S-measure", True, _pysod("Smeasure", "sm"), _mean),
    "e_measure": DomainMetric("mean E-measure", True,
                              _pysod("Emeasure", "em", lambda em: np.mean(em["curve"])), _mean),
    "wf_measure": DomainMetric("weighted F-measure", True, _pysod("WeightedFmeasure", "wfm"), _mean),
    "ber": DomainMetric("BER", False, _confusion, _ber, width=4),
}


def check_metric_names(domain_metrics: Mapping[str, Sequence[str]], source: str) -> None:
    """One-line error naming the stream file, the domain and the close names for an unknown metric."""
    import difflib

    for domain, names in domain_metrics.items():
        for name in names:
            if name not in DOMAIN_METRICS:
                close = difflib.get_close_matches(name, DOMAIN_METRICS, n=2)
                hint = f" (did you mean {' or '.join(close)}?)" if close else ""
                raise ConfigError(f"{source}: domain {domain!r}: unknown metric {name!r}{hint}; "
                                 f"known: {', '.join(DOMAIN_METRICS)}")


def as_uint8_maps(logits, masks) -> tuple[np.ndarray, np.ndarray]:
    """(B, S, S) uint8 prediction maps ``round(255 sigmoid(logits))`` and masks as 0/255."""
    import torch

    if logits.dim() == 4:
        logits = logits[:, 0]
    if masks.dim() == 4:
        masks = masks[:, 0]
    pred = (torch.sigmoid(logits.float()) * 255).round().to(torch.uint8)
    gt = ((masks > 0.5).to(torch.uint8) * 255)
    return pred.cpu().numpy(), gt.cpu().numpy()


def image_stats(names: Sequence[str], pred: np.ndarray, gt: np.ndarray) -> Dict[str, np.ndarray]:
    """Per metric, the (B, k) statistics of each image of a batch."""
    return {n: np.stack([DOMAIN_METRICS[n].stats(p, g) for p, g in zip(pred, gt)]) for n in names}


def image_values(name: str, stats: np.ndarray) -> List[float]:
    """Each image's own value of metric ``name`` from its statistics (per-image BER included)."""
    return [DOMAIN_METRICS[name].reduce(row, 1) for row in stats]


def subset_summary(R, trained: int, columns: Sequence[int], higher_is_better: bool) -> Dict[str, float]:
    """AA and FM (SAMCL's) of a domain metric over the trained domains that declare it (``columns``):
    AA = mean_d R[T, d]; FM = mean_d (R[d+1, d] - R[T, d]) (for BER, a positive FM is an error
    that fell after training, i.e. no forgetting; its good direction flips as for MAE)."""
    R = np.asarray(R, dtype=float)
    ds = [d for d in columns if d < trained]
    if not ds:
        return {"AA": float("nan"), "FM_samcl": float("nan")}
    return {"AA": float(np.mean([R[trained, d] for d in ds])),
            "FM_samcl": float(np.mean([R[d + 1, d] - R[trained, d] for d in ds]))}
