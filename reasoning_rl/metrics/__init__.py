"""Pass@K / Maj@K estimators per problem and bootstrap confidence intervals over problems."""

from reasoning_rl.metrics.bootstrap import bootstrap_ci, paired_bootstrap, summarize
from reasoning_rl.metrics.estimators import (
    MODES,
    compute_problem_scores,
    maj_at_k,
    majority_correct_at_k,
    pass_at_k,
    validate_ks,
)

__all__ = [
    "MODES",
    "bootstrap_ci",
    "compute_problem_scores",
    "maj_at_k",
    "majority_correct_at_k",
    "paired_bootstrap",
    "pass_at_k",
    "summarize",
    "validate_ks",
]
