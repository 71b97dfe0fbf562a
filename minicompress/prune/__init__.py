"""Pruning, document §3.1 (剪枝): weight pruning (§3.1.1) and filter pruning (§3.1.2).

One concept per file:

* ``mask.py``      the mask as a weight reparametrisation W_eff = W ⊙ m; ``remove`` (step 6)
* ``scores.py``    importance scores: |W|, |∂L/∂W|, |W·∂L/∂W|; filter l1/l2/median/Taylor
* ``select.py``    exact top-k selection, per layer or global, deterministic ties (step 3)
* ``objective.py`` the document's L_task(W ⊙ m) + λ‖W ⊙ (1 − m)‖₁ and its gradients (step 4)
* ``schedule.py``  Zhu & Gupta cubic sparsity schedule, usable by every method
* ``scored.py``    score-based pruning, one-shot or scheduled, with Adam fine-tuning
* ``learned.py``   Adam-optimised masks (steps 4–5), ``learned_mask_prune`` entry point
* ``nm.py``        N:M semi-structured sparsity (2:4) with a learned mask, per group of M
* ``filters.py``   filter/neuron masks, learned filter masks and physical removal (§3.1.2)
* ``neurons.py``   the filter method on an MLP's hidden units: mask, scores, Adam, removal
"""
from .filters import (ChannelGate, FilterPruning, attach_gates, filter_prune, filter_scores, gates,
                      learned_filter_prune, remove_filters, shrink)
from .learned import LearnedMaskPruner, MaskPruning, learned_mask_prune
from .neurons import (NeuronPruning, learned_neuron_prune, neuron_layers, neuron_prune,
                      remove_neurons)
from .mask import (LearnedMask, Mask, attach_mask, get_mask, masks, prunable_layers, remove,
                   sparsity)
from .nm import NMPruner, NMPruning, group_counts, is_nm, magnitude_nm, nm_mask, nm_prune
from .objective import l1_penalty, pruning_objective
from .schedule import ConstantSchedule, CubicSchedule, cubic_sparsity
from .scored import ScheduledPruning, ensure_masks, prune_by_score, scheduled_prune
from .scores import FILTER_SCORES, WEIGHT_SCORES, filter_norm_scores, weight_scores
from .select import kept_count, select, topk_mask

__all__ = [
    "ChannelGate", "ConstantSchedule", "CubicSchedule", "FILTER_SCORES", "FilterPruning",
    "LearnedMask", "LearnedMaskPruner", "Mask", "MaskPruning", "NMPruner", "NMPruning",
    "NeuronPruning", "ScheduledPruning", "WEIGHT_SCORES", "attach_gates", "attach_mask",
    "cubic_sparsity", "ensure_masks", "filter_norm_scores", "filter_prune", "filter_scores",
    "gates", "get_mask", "group_counts", "is_nm", "kept_count", "l1_penalty",
    "learned_filter_prune", "learned_mask_prune", "learned_neuron_prune", "magnitude_nm", "masks",
    "neuron_layers", "neuron_prune", "nm_mask", "nm_prune", "prunable_layers", "prune_by_score",
    "pruning_objective", "remove", "remove_filters", "remove_neurons", "scheduled_prune", "select",
    "shrink", "sparsity", "topk_mask", "weight_scores",
]
