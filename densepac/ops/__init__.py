"""PAC operators (functional and modules), PAC-CRF and guided-filter baselines."""

from densepac.ops.consistency import (
    SAMPLINGS,
    SourceConsistency,
    sample_as_source,
    source_consistency,
    source_consistency_,
)
from densepac.ops.crf import CRFWrapped, PacCRF, pac_crf, pac_crf_step, scaled_dilation
from densepac.ops.guided import GuidedRefined, guided_refine
from densepac.ops.kernels import KERNEL_TYPES, adaptive_kernel
from densepac.ops.layers import PacConv2d, PacConvTranspose2d, PacPool2d
from densepac.ops.pac import pac_conv2d, pac_conv_transpose2d, pac_pool2d
from densepac.ops.refine import GraphRefine, graph_refine, guide_features
from densepac.ops.sample_pac import at_samples, gaussian_spatial_logits, sample_pac_upsample
from densepac.plugins.adl import ADL, ADLHook, adl, adl_layers, insert_adl

__all__ = [
    "ADL",
    "adl",
    "ADLHook",
    "adl_layers",
    "insert_adl",
    "KERNEL_TYPES",
    "adaptive_kernel",
    "pac_conv2d",
    "pac_conv_transpose2d",
    "pac_pool2d",
    "sample_pac_upsample",
    "gaussian_spatial_logits",
    "at_samples",
    "PacConv2d",
    "PacConvTranspose2d",
    "PacPool2d",
    "PacCRF",
    "CRFWrapped",
    "GuidedRefined",
    "guided_refine",
    "pac_crf",
    "pac_crf_step",
    "scaled_dilation",
    "SAMPLINGS",
    "sample_as_source",
    "source_consistency",
    "source_consistency_",
    "SourceConsistency",
    "graph_refine",
    "guide_features",
    "GraphRefine",
]
