"""Fold inference-mode batch normalisation into the preceding convolution.

In eval mode a norm layer is the affine map ``y = (x - mean) / sqrt(var + eps) * gamma + beta``
per channel, so ``bn(conv(x))`` equals one convolution with rescaled weights and a bias. The
exported graph then runs one kernel where there were two (``FrozenBatchNorm2d`` in particular
exports as a chain of Mul/Add nodes that no runtime fuses on its own).
"""

import copy

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

NORM_TYPES = (nn.BatchNorm2d, FrozenBatchNorm2d)


def fuse_conv_norm(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """A new convolution equal to ``norm(conv(x))`` for an eval-mode ``norm`` (BatchNorm2d or
    FrozenBatchNorm2d with running statistics)."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)  # (C_out,)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter((conv.weight * scale[:, None, None, None]).detach(), requires_grad=False)
    fused.bias = nn.Parameter(((bias - norm.running_mean) * scale + norm.bias).detach(), requires_grad=False)
    return fused


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, norm) child names whose norm directly follows the conv: consecutive children of a
    Sequential (a ResNet ``downsample``), or ``convN``/``bnN`` of a ResNet stem or block."""
    children = dict(module.named_children())
    if isinstance(module, nn.Sequential):
        names = list(children)
        return [(a, b) for a, b in zip(names, names[1:])
                if isinstance(children[a], nn.Conv2d) and isinstance(children[b], NORM_TYPES)]  # fmt: skip
    return [
        (name, "bn" + name[len("conv"):])
        for name, child in children.items()
        if name.startswith("conv") and isinstance(child, nn.Conv2d)
        and isinstance(children.get("bn" + name[len("conv"):]), NORM_TYPES)
    ]  # fmt: skip


def fold_batch_norms(module: nn.Module) -> int:
    """Fold every conv -> norm pair of ``module`` (in place): the conv becomes the fused one and
    the norm an ``nn.Identity``. Returns the number of folded pairs. Call in eval mode only:
    a folded model can no longer be trained. Norm layers without a preceding conv are kept."""
    folded = 0
    for child in module.children():
        folded += fold_batch_norms(child)
    for conv_name, norm_name in _pairs(module):
        conv, norm = getattr(module, conv_name), getattr(module, norm_name)
        if isinstance(norm, nn.BatchNorm2d) and norm.running_mean is None:
            continue  # batch statistics even in eval mode: nothing to fold
        setattr(module, conv_name, fuse_conv_norm(conv, norm))
        setattr(module, norm_name, nn.Identity())
        folded += 1
    return folded
