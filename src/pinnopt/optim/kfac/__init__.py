"""K-FAC: Kronecker-factored approximate curvature, for ordinary networks and for PINNs.

Curvature. For the least-squares loss L(θ) = ½‖r(θ)‖² (the one contract of
:mod:`pinnopt.objective`) the generalized Gauss–Newton matrix is JᵀJ with
J = ∂r/∂θ. K-FAC (Martens & Grosse, "Optimizing neural networks with
Kronecker-factored approximate curvature", ICML 2015) keeps one block per
``nn.Linear`` layer z = W a + b and approximates it by a Kronecker product. With
the bias folded into the weight, ã = (a, 1) and M = [W | b], and the output
gradient g_n = ∂r_n/∂z_n of residual n (each residual depends on its own point
only, so one backward pass of Σ_n r_n gives all of them),

    Σ_n J_nᵀ J_n  (block of M)  ≈  A ⊗ G,   A = (1/N) Σ_n ã_n ã_nᵀ,   G = Σ_n g_n g_nᵀ,

acting on a matrix V of M's shape as V ↦ G V A. This is the GGN, not the
empirical Fisher: g_n is the gradient of the residual, not of its square.

PINNs (Dangel, Müller & Zeinhofer, "Kronecker-factored approximate curvature for
physics-informed neural networks", NeurIPS 2024). The jet of a residual —
value, ∇u, ∂²u or Δu (:mod:`pinnopt.derivatives`) — passes through a linear layer
as S slots that share the weight: z_ns = W a_ns (+ b on the value slot s = 0
only, so ã_ns = (a_ns, 1) for s = 0 and (a_ns, 0) otherwise), and
∂r_n/∂M = Σ_s g_ns ã_nsᵀ. Treating the shared slots as more data
("K-FAC-expand", Eschenhagen et al., NeurIPS 2023) gives, for the N_k points of
residual term k,

    A_k = (1/(N_k S)) Σ_{n,s} ã_ns ã_nsᵀ,        G_k = Σ_{n,s} g_ns g_nsᵀ.

Terms. The layer sees one pass of the network per term (``Objective`` evaluates
each term's points once). Passes with one slot (value-only terms: boundary,
initial and data conditions) form one group, passes with derivative slots (the
PDE operator, Neumann conditions) the other; inside a group the passes are pooled
(expand over their union: A_g = Σ ã ãᵀ / Σ N S, G_g = Σ_k G_k). The curvature of
the layer is then A_0 ⊗ G_0 + A_1 ⊗ G_1 — the interior plus boundary Gramian of
the paper — and ``inverse="eigen"`` inverts this sum *exactly* through the
generalized eigenproblems A_0 V = A_1 V Λ_A, G_0 U = G_1 U Λ_G:

    (A_0 ⊗ G_0 + A_1 ⊗ G_1)⁻¹ : M ↦ U [(Uᵀ M V) ⊘ (λ_G λ_Aᵀ + 1)] Vᵀ,

as the paper does. With a single group this is the eigenbasis inverse
U [(Uᵀ M V) ⊘ λ_G λ_Aᵀ] Vᵀ. ``inverse="cholesky"`` is cheaper and coarser: it
pools all passes into one Kronecker product and solves with Cholesky factors.

Damping. Tikhonov damping λ is split between the factors of each product,
A + π√λ I and G + (√λ/π) I, with π = √((tr A / dim A) / (tr G / dim G)) (the
π-correction of Martens & Grosse, §6.3; ``damping_split="pi"``) or π = 1
(``damping_split="sqrt"``).

Update (:class:`KFAC`). From the gradient ∇L = Jᵀr and the K-FAC direction
Δ = −(K-FAC + damping)⁻¹ ∇L:

* ``update="auto"`` (default): the step δ = αΔ + μδ_prev minimizes the quadratic
  model m(δ) = ½ δᵀ(JᵀJ + λI)δ + ∇Lᵀδ over (α, μ) — a 2 × 2 solve with the exact
  products JΔ and Jδ_prev (Martens & Grosse §7). λ follows the Levenberg–Marquardt
  rule on the reduction ratio ρ (§6.5) and a step that does not lower the loss is
  taken back and retried with more damping, so every step lowers the loss.
* ``update="line_search"``: θ ← θ + α d with d = Δ + μ d_prev and α the best of the
  grid lr·2⁻ᵏ, k = 0 … line_search_steps − 1 (as in ENGD, Müller & Zeinhofer 2023).
* ``base="adam"`` (any registered first-order optimizer): the preconditioned
  gradient replaces ``.grad`` and the base optimizer steps.

The layer Jacobian products need no extra backward pass: J_n v = Σ_s g_nsᵀ V ã_ns
for a layer's block V of v, from the same recorded ã_ns and g_ns. Parameters
outside ``nn.Linear`` layers get the plain gradient (and autograd products).

Layout, after kfac-pytorch, one module per concept:

* :mod:`.layers`: what a layer is — :class:`LinearLayer` (recorded passes, factors,
  gradients, Jacobian products, its hooks) and :class:`LayerPass`;
* :mod:`.curvature`: what the algorithm stores — :class:`KroneckerCurvature`
  (running averages of the factors, damped inverses);
* :mod:`.preconditioner`: when it runs — :class:`KFACPreconditioner` (factor and
  inverse periods; usable in front of any torch optimizer);
* :mod:`.optimizer`: :class:`KFAC`, the optimizer; its damping and step control
  come from :mod:`pinnopt.optim.least_squares` (shared with ``gn``).
"""

from pinnopt.optim.kfac.curvature import DAMPING_SPLITS, INVERSES, KroneckerCurvature
from pinnopt.optim.kfac.layers import JET, VALUE, LayerPass, LinearLayer, stack_slots
from pinnopt.optim.kfac.optimizer import KFAC, UPDATES
from pinnopt.optim.kfac.preconditioner import KFACPreconditioner

__all__ = [
    "DAMPING_SPLITS",
    "INVERSES",
    "JET",
    "KFAC",
    "UPDATES",
    "VALUE",
    "KFACPreconditioner",
    "KroneckerCurvature",
    "LayerPass",
    "LinearLayer",
    "stack_slots",
]
