"""One solve on several processes: torch.distributed, with the collocation points sharded.

Launched by torchrun (``torchrun --nproc-per-node K -m pinnopt solve …``, or ``pinnopt
solve … --nproc K``, which starts torchrun), every process builds the same model from the
same seed and draws the same global point set, then keeps its shard of every term's
points (:meth:`Sync.shard`: contiguous slices, as even as the counts allow). The
objective is normalised with the global counts N_k (the ``counts`` seam of
:class:`~pinnopt.objective.Objective`), so a shard's loss is its part of the one global
loss, L = Σ_ranks L_rank, and ∇L = Σ_ranks ∇L_rank. Every rank then takes the same step:

* first-order optimizers and L-BFGS: after the local backward, the gradients are summed
  over the ranks in one ``all_reduce`` of a flat buffer (:meth:`Sync.gradients`), and the
  loss the closure returns is the summed one (:meth:`Sync.losses`);
* Gauss–Newton (``gn``): the residual closure is wrapped (:class:`ShardedClosure`). The
  ``chunked`` back end all-reduces JᵀJ (P × P) and Jᵀr (P), so its traffic does not grow
  with the points; the dense back ends (``qr``, ``cholesky``, ``woodbury``) factor J
  itself and gather its rows (M × P) on every rank, so they give the same result but
  do not scale. The residual r (M numbers) is gathered for the loss and the gain ratio,
  so damping decisions are the same everywhere. The matrix-free ``cg`` back end keeps
  this rank's rows and sums the loss, Jᵀr and every JᵀJv of conjugate gradient (P
  numbers each) through the closure's ``reduce``;
* K-FAC sums what it needs itself (the loss, the gradient, its Kronecker factors,
  ‖Jv‖²) through the ``reduce`` of a :class:`ReducingClosure`.

Adaptive sampling (:mod:`pinnopt.train.sampling`) and ``grad_norm`` weighting
(:mod:`pinnopt.train.weighting`) work on the global points through :meth:`Sync.gather_rows`
and :meth:`Sync.sum`, so every rank draws and weights alike.

Decisions that end a run (time limit, a signal) are agreed on by all ranks
(:meth:`Sync.agree`), so no rank waits in a collective the others have left. A rank that
dies makes the next collective of the others fail: at once when its connection closes,
after :data:`DEFAULT_TIMEOUT_S` when it hangs. That failure is raised as
:class:`ProcessGroupError` (one line on the command line, exit code 1); the last
checkpoint, written atomically by rank 0 before, stays good. Only rank 0
writes the run directory and checkpoints and draws the progress bar. The communication
is torch.distributed's own (gloo on CPU, NCCL on CUDA); nothing here sends bytes itself.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from pinnopt.objective import ResidualClosure

# how long a collective waits for a rank that does not come (a dead rank): then it fails
DEFAULT_TIMEOUT_S = 120.0


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started as one of several (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def split_nproc(argv: list[str]) -> tuple[list[str], int | None]:
    """(``argv`` without ``--nproc K``, K or None): the command line's process count.
    ValueError for a K that is not an integer >= 1 or a command other than ``solve``."""
    rest, nproc, words = [], None, iter(argv)
    for word in words:
        if word == "--nproc" or word.startswith("--nproc="):
            value = word.partition("=")[2] if "=" in word else next(words, "")
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"--nproc: must be an integer >= 1, got {value!r}")
            nproc = int(value)
        else:
            rest.append(word)
    if nproc is not None and rest[:1] not in (["solve"], ["meta-train"]):
        raise ValueError("--nproc: only `pinnopt solve` and `pinnopt meta-train` run on "
                         "several processes")  # fmt: skip
    return rest, nproc


def launch_torchrun(argv: list[str], nproc: int) -> int:
    """Run ``pinnopt ARGV`` as ``nproc`` processes under torchrun on this machine; its exit
    code (that of the first process that failed, if any)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "pinnopt", *argv]  # fmt: skip
    return subprocess.run(command).returncode


def init_from_environment(device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Join the process group that torchrun's environment describes (gloo on CPU, NCCL on
    CUDA), unless there is none or it is joined already; True when this call joined it."""
    if not launched_by_torchrun() or dist.is_initialized():
        return False
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


class ProcessGroupError(RuntimeError):
    """Another process of this solve stopped (or stopped answering within the timeout)."""


def _collective(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, a torch.distributed call; its failure as ProcessGroupError."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as e:  # gloo and NCCL raise RuntimeError (DistBackendError among them)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ProcessGroupError(
            f"another process of this solve stopped or did not answer ({reason[:200]}); "
            "the last checkpoint is good: resume from it"
        ) from None


def check_stages(stages) -> None:
    """ValueError naming the first chain stage that cannot run on more than one process."""
    for stage in stages:
        if stage.spec.closure == "residuals" and stage.spec.name not in ("gn", "kfac"):
            raise ValueError(
                f"optimizer {stage.optimizer} is not supported on more than one process yet; "
                "first-order optimizers, L-BFGS, the quasi-Newton methods, gn and kfac are"
            )


class Sync:
    """What one solve needs from its other processes; a no-op in a single process.

    Built with no argument it reads torch.distributed's default group: active when a group
    of more than one process is initialised.
    """

    def __init__(self) -> None:
        self.active = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.active else 0
        self.size = dist.get_world_size() if self.active else 1

    @property
    def is_main(self) -> bool:
        """True on the rank that writes files and prints (rank 0)."""
        return self.rank == 0

    def shard(self, points: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, int]]:
        """(this rank's slice of every term's points, the global count of every term)."""
        counts = {k: int(x.shape[0]) for k, x in points.items()}
        if not self.active:
            return points, {}
        for name, n in counts.items():
            if n < self.size:
                raise ValueError(
                    f"term {name!r} has {n} points, fewer than the {self.size} processes"
                )
        return {k: self.shard_rows(x) for k, x in points.items()}, counts

    def sum(self, t: Tensor) -> Tensor:
        """``t`` summed over the ranks, in place (one all_reduce); returns it."""
        if self.active:
            _collective(dist.all_reduce, t)
        return t

    def maximum(self, t: Tensor) -> Tensor:
        """``t`` (a copy) maximised over the ranks, entry by entry."""
        t = t.detach().clone()
        if self.active:
            _collective(dist.all_reduce, t, op=dist.ReduceOp.MAX)
        return t

    def shard_rows(self, t: Tensor) -> Tensor:
        """This rank's rows of ``t``, split as :meth:`shard` splits points."""
        return torch.tensor_split(t, self.size)[self.rank] if self.active else t

    def gradients(self, params: Sequence[Tensor]) -> None:
        """Sum every parameter's .grad over the ranks (one all_reduce of a flat buffer)."""
        if not self.active:
            return
        flat = self.sum(torch.cat([
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params
        ]))  # fmt: skip
        for p, part in zip(params, flat.split([p.numel() for p in params])):
            p.grad = part.view_as(p).clone()

    def losses(self, loss: Tensor, parts: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss, per-term losses) summed over the ranks, detached (one all_reduce)."""
        if not self.active:
            return loss, parts
        values = torch.stack([loss.detach(), *(v.detach() for v in parts.values())])
        _collective(dist.all_reduce, values)
        return values[0], dict(zip(parts, values[1:]))

    def agree(self, flags: Sequence[bool]) -> list[bool]:
        """Each flag True on every rank when it is True on at least one (one all_reduce)."""
        if not self.active:
            return list(flags)
        values = torch.tensor([1.0 if f else 0.0 for f in flags])
        _collective(dist.all_reduce, values, op=dist.ReduceOp.MAX)
        return [bool(v > 0) for v in values]

    def total(self, values: Sequence[int]) -> list[int]:
        """Integers summed over the ranks."""
        if not self.active:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.int64)
        _collective(dist.all_reduce, t)
        return t.tolist()

    def gather_rows(self, t: Tensor) -> Tensor:
        """The ranks' tensors stacked along dim 0 in rank order (their row counts may differ)."""
        if not self.active:
            return t
        rows = self.total_each(t.shape[0])
        padded = t.new_zeros((max(rows), *t.shape[1:]))
        padded[: t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        _collective(dist.all_gather, parts, padded.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, rows)])

    def total_each(self, n: int) -> list[int]:
        """Every rank's ``n``, in rank order."""
        counts = [torch.zeros(1, dtype=torch.int64) for _ in range(self.size)]
        _collective(dist.all_gather, counts, torch.tensor([n], dtype=torch.int64))
        return [int(c.item()) for c in counts]

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object) on every rank."""
        if not self.active:
            return value
        box = [value]
        _collective(dist.broadcast_object_list, box, src=0)
        return box[0]

    def residual_closure(
        self, closure: ResidualClosure, optimizer
    ) -> ShardedClosure | ReducingClosure | ResidualClosure:
        """``closure`` as ``optimizer`` sees it on all the ranks together (itself when alone):
        a :class:`ReducingClosure` for an optimizer that sums over the processes itself
        (``sums_over_processes``: K-FAC), a :class:`ShardedClosure` otherwise (Gauss–Newton)."""
        if not self.active:
            return closure
        if getattr(optimizer, "sums_over_processes", False):
            return ReducingClosure(closure, self)
        return ShardedClosure(closure, self)


class ShardedClosure:
    """A :class:`~pinnopt.objective.ResidualClosure` over the global point set, built from
    this rank's shard: r and J gathered in rank order, JᵀJ and Jᵀr summed."""

    def __init__(self, closure: ResidualClosure, sync: Sync) -> None:
        self.closure, self.sync, self.reduce = closure, sync, sync.sum

    @property
    def pass_sizes(self) -> list[int]:
        return self.sync.total(self.closure.pass_sizes)

    def __call__(self) -> Tensor:
        """This rank's r with its graph, for the matrix-free back end, which sums what it
        needs over the ranks through :attr:`reduce`."""
        return self.closure()

    def jacobian(self, params: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        r, J = self.closure.jacobian(params)
        return self.sync.gather_rows(r), self.sync.gather_rows(J)

    def normal_equations(self, params: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        r, gram, grad = self.closure.normal_equations(params)
        both = self.sync.sum(torch.cat([gram.reshape(-1), grad]))
        n = grad.numel()
        return self.sync.gather_rows(r), both[: n * n].view(n, n), both[n * n :]

    def without_graph(self) -> Tensor:
        return self.sync.gather_rows(self.closure.without_graph())


class ReducingClosure:
    """This rank's residual closure as it is (r with its graph, its own pass sizes), with
    ``reduce``, the sum over the ranks, for an optimizer that reduces what it needs (K-FAC:
    the loss, the gradient, its Kronecker factors and ‖Jv‖²)."""

    def __init__(self, closure: ResidualClosure, sync: Sync) -> None:
        self.closure, self.reduce = closure, sync.sum

    @property
    def pass_sizes(self) -> list[int]:
        return self.closure.pass_sizes

    def __call__(self) -> Tensor:
        return self.closure()
