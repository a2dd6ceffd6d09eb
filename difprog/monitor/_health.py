"""`Health`: what health.json holds (`Monitor.health()`, `FitResult.health`), a dict that a
notebook shows as the training-health dashboard."""

from __future__ import annotations

from difprog import inline
from difprog.monitor._page import page


class Health(dict):
    """health.json's contents: `every`, `thresholds`, `weights` and `activations` in forward
    order, `labels`, `steps`, `loss`, one series per statistic (by path) and `diagnoses`.

    A plain dict in every other way (it compares, copies and serialises as one); as the last
    expression of a notebook cell it shows the interactive dashboard of health.html inline.
    """

    def _repr_html_(self) -> str:
        return inline.frame(page(self), height=900, title="Training health")
