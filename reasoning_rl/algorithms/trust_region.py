"""The pieces of a trust-region step (Schulman et al. 2015, TRPO, Appendix C), on any list of parameters.

    maximise  g·s   subject to  ½ sᵀ F s ≤ δ
    →  x = F⁻¹g by conjugate gradient (F only through products F·v),  s = sqrt(2δ / xᵀFx) · x,
    then backtrack s, s·β, s·β², … until the surrogate improves and the measured KL ≤ δ (else revert).

F is the Fisher information of the policy: the Hessian of the mean KL(π_old ‖ π_θ) at θ = θ_old. Its
product with v is a Hessian-vector product: ∇_θ (∇_θ KL · v), two backward passes, no F in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from reasoning_rl import parallel


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def get_flat_params(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return flat([p.detach() for p in params]).clone()


@torch.no_grad()
def set_flat_params(params: Sequence[torch.Tensor], values: torch.Tensor) -> None:
    offset = 0
    for p in params:
        p.copy_(values[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def flat_grad(output: torch.Tensor, params: Sequence[torch.Tensor], **kwargs) -> torch.Tensor:
    grads = torch.autograd.grad(output, params, allow_unused=True, **kwargs)
    return flat([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])


class FisherVectorProduct:
    """v ↦ (F + damping·I) v for F = ∇²_θ KL(π_old ‖ π_θ) at θ_old.

    `mean_kl()` runs the forward pass and returns the mean KL(stop_grad(π_θ) ‖ π_θ): zero with zero
    gradient at θ_old, and with the Fisher as its Hessian. Its gradient is taken once with
    create_graph=True; each product is then one more backward pass through that graph.
    Damping (Levenberg-Marquardt) keeps the system positive definite where the Fisher is singular.
    """

    def __init__(self, mean_kl: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], damping: float):
        self.params = list(params)
        self.damping = damping
        self.kl_grad = flat_grad(mean_kl(), self.params, create_graph=True)
        self.calls = 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        hv = flat_grad(self.kl_grad @ v.detach(), self.params, retain_graph=True)
        # Data parallel: each process's KL is over its own sequences; their mean is the batch's Fisher.
        return parallel.mean(hv) + self.damping * v


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, tol: float = 1e-10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve A x = b for symmetric positive-definite A known only through `matvec`.

    Returns x and the residual r = b − A x (so A x = b − r comes free). Starts from x = 0, so the
    first direction is b.
    """
    x = torch.zeros_like(b)
    r = b.clone()  # residual b − A x
    d = r.clone()  # search direction, A-conjugate to the previous ones
    rr = r @ r
    for _ in range(iters):
        if rr <= tol:
            break
        ad = matvec(d)
        alpha = rr / (d @ ad)
        x += alpha * d
        r -= alpha * ad
        rr_next = r @ r
        d = r + (rr_next / rr) * d
        rr = rr_next
    return x, r


def max_step(direction: torch.Tensor, fisher_direction: torch.Tensor, max_kl: float) -> torch.Tensor:
    """Scale `direction` so the quadratic KL model ½ sᵀ F s equals max_kl."""
    shs = direction @ fisher_direction
    if not shs > 0:
        return torch.zeros_like(direction)
    return direction * torch.sqrt(2 * max_kl / shs)


@dataclass
class LineSearchResult:
    accepted: bool
    backtracks: int  # shrinks before the accepted step (max_backtracks when none was accepted)
    step_fraction: float  # of the full step taken; 0 when reverted
    surrogate_improvement: float  # 0 when reverted
    kl: float  # measured KL(π_old ‖ π_new) at the parameters kept; 0 when reverted


def backtracking_line_search(
    evaluate: Callable[[], tuple[float, float]],
    params: Sequence[torch.Tensor],
    full_step: torch.Tensor,
    surrogate_before: float,
    max_kl: float,
    backtrack_ratio: float = 0.5,
    max_backtracks: int = 10,
) -> LineSearchResult:
    """Try θ_old + β^k s for k = 0, 1, …; keep the first with a better surrogate and KL ≤ max_kl.

    `evaluate()` measures (surrogate, KL to the old policy) at the current parameters. The quadratic
    model behind s can be far off, so the KL is measured, never assumed. If no try passes, θ_old is
    restored exactly.
    """
    old = get_flat_params(params)
    for k in range(max_backtracks):
        fraction = backtrack_ratio**k
        set_flat_params(params, old + fraction * full_step)
        surrogate, kl = evaluate()
        improvement = surrogate - surrogate_before
        if kl <= max_kl and improvement > 0:
            return LineSearchResult(True, k, fraction, improvement, kl)
    set_flat_params(params, old)
    return LineSearchResult(False, max_backtracks, 0.0, 0.0, 0.0)
