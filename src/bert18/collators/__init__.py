"""Collators for every pretraining objective: dynamic, reproducible, vectorized.

``MLMCollator`` (token / whole-word / n-gram / span masking), ``KnowledgeMaskingCollator`` (ERNIE's
phrase and entity units), ``PermutationLMCollator`` (XLNet's factorization orders as attention
masks), ``PretrainingCollator`` (composes the tasks of a ``Bert18Config``), ``SetEpochCallback``
to give them the Trainer's epoch (``SharedEpoch`` carries it into every DataLoader worker), and
``static_masking`` / ``StaticMasks`` for BERT's static masks.
"""

from .base import DynamicCollator, SetEpochCallback, SharedEpoch
from .knowledge import LEVELS, KnowledgeMaskingCollator, LevelScheduleCallback
from .mlm import MLM_GRANULARITIES, MLMCollator, word_start_table
from .permutation import PLM_GRANULARITIES, PLM_INPUTS, PermutationLMCollator, permutation_masks, ranks_of_order
from .pretraining import PretrainingCollator
from .static import StaticMasks, static_masking

__all__ = [
    "DynamicCollator",
    "SetEpochCallback",
    "SharedEpoch",
    "MLM_GRANULARITIES",
    "MLMCollator",
    "word_start_table",
    "LEVELS",
    "KnowledgeMaskingCollator",
    "LevelScheduleCallback",
    "PLM_GRANULARITIES",
    "PLM_INPUTS",
    "PermutationLMCollator",
    "permutation_masks",
    "ranks_of_order",
    "PretrainingCollator",
    "StaticMasks",
    "static_masking",
]
