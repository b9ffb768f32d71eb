"""What a task logs beyond its losses and metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LoggingConfig:
    """Optional logging of a task.

    Parameters
    ----------
    log_learning_rate : bool
        Required (as in AutoTimm). Log ``train/lr`` (the first param group's
        learning rate) every step.
    log_gradient_norm : bool
        Required. Log ``train/grad_norm`` (global L2 norm of the gradients) before every
        optimizer step.
    log_weight_norm : bool
        Log ``train/weight_norm`` (global L2 norm of the parameters) before
        every optimizer step.
    log_confusion_matrix, log_predictions : bool
        Accepted for AutoTimm compatibility; classification features.
    predictions_per_epoch : int
        Number of predictions to log per epoch when ``log_predictions``; >= 0.
    verbosity : int
        0, 1 or 2.
    """

    log_learning_rate: bool
    log_gradient_norm: bool
    log_weight_norm: bool = False
    log_confusion_matrix: bool = False
    log_predictions: bool = False
    predictions_per_epoch: int = 8
    verbosity: int = 1

    def __post_init__(self) -> None:
        if self.verbosity not in (0, 1, 2):
            raise ValueError(f"verbosity must be 0, 1 or 2, got {self.verbosity!r}")
        if self.predictions_per_epoch < 0:
            raise ValueError(
                f"predictions_per_epoch must be >= 0, got {self.predictions_per_epoch!r}"
            )
