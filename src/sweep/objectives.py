"""The metrics a trial reports every epoch, and how a sweep optimises a metric unless told.

Torch-free on purpose: the study tools (``sweep-export``, ``sweep-report``) and the sweeper's planning read these
without loading the trial's code.
"""

from __future__ import annotations

EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
# The final model evaluated on the examples it trained on: ``train_acc`` is a running mean over the last epoch.
FINAL_METRICS = ("train_eval_loss", "train_eval_acc")


def default_direction(metric: str) -> str:
    """How a sweep optimises ``metric`` unless told: losses and times down, everything else up."""
    return "minimize" if metric.endswith(("_loss", "_seconds")) else "maximize"
