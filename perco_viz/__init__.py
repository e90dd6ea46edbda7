"""perco_viz: see feature-representation transfer by perception coherence.

A lightweight *student* learns to rank the dissimilarities between inputs the way a large
*teacher* does (Nguyen et al., "Feature Representation Transferring to Lightweight Models
via Perception Coherence", arXiv:2505.06595, TMLR 2026). This package holds the mathematics,
the training engine, the run store and pure figure functions; the Streamlit app lives in
``app.py`` and ``pages/`` and is never imported from here.

>>> import perco_viz as pv
>>> import torch
>>> t = torch.randn(32, 16)
>>> round(pv.perception_coherence(t @ torch.randn(16, 16) * 3 + 1, t), 3) >= 0.5
True
"""

_LAZY = {  # name -> its module, imported on first use: `import perco_viz.process` does not import torch
    **dict.fromkeys(("KERNELS", "METRICS", "normalized_ranks", "pairwise_dissimilarity", "per_sample_coherence",
                     "perception_coherence", "rank_agreement"), "perco_viz.coherence"),
    **dict.fromkeys(("ConfigError", "RunConfig"), "perco_viz.config"),
    **dict.fromkeys(("Estimate", "PerSampleEstimate", "estimate_per_sample_coherence",
                     "estimate_perception_coherence"), "perco_viz.estimate"),
    **dict.fromkeys(("Run", "open_run"), "perco_viz.writer"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    # The loss registry pulls in every baseline module: load it on first use.
    if name in ("LOSS_NAMES", "LOSSES", "make_loss"):
        from perco_viz import losses

        return getattr(losses, name)
    if name == "coherence_loss":
        from perco_viz.losses.coherence import coherence_loss

        return coherence_loss
    raise AttributeError(f"module 'perco_viz' has no attribute {name!r}")


__all__ = [
    "KERNELS",
    "LOSS_NAMES",
    "METRICS",
    "ConfigError",
    "Estimate",
    "PerSampleEstimate",
    "Run",
    "RunConfig",
    "coherence_loss",
    "estimate_per_sample_coherence",
    "estimate_perception_coherence",
    "make_loss",
    "normalized_ranks",
    "open_run",
    "pairwise_dissimilarity",
    "per_sample_coherence",
    "perception_coherence",
    "rank_agreement",
]
__version__ = "0.1.0"
