"""A guard for the RoI pooling input: non-finite boxes are an error, not a crash.

torchvision's ``roi_align`` (and ``roi_pool``) turn box coordinates into feature-map indices
without checking them: a NaN or infinite coordinate (a diverged model's proposals) reads
outside the feature map and ends the process with a segmentation fault, no message.
"""

import torch


class NonFiniteBoxError(FloatingPointError):
    """RoIs with a NaN or infinite coordinate reached the RoI pooling."""


def check_finite_rois(rois: torch.Tensor) -> None:
    """Raise :class:`NonFiniteBoxError` if any of ``rois`` (Tensor[R, 4] or [R, 5]) is not finite.

    One device synchronisation (the RoI sampling already has several). Skipped while the graph
    is traced for export: a data-dependent branch cannot be recorded.
    """
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    finite = torch.isfinite(rois).all(dim=1)
    if not bool(finite.all()):
        raise NonFiniteBoxError(
            f"{int((~finite).sum())} of {len(rois)} RoIs have a non-finite coordinate: "
            f"the model's outputs overflowed (training diverged?)"
        )
