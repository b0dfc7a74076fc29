"""What the optimizers' compiled (``fused``) steps share: whether ``torch.compile`` can
work on a device, what it raises when a graph cannot be compiled, the notice given when
a step falls back to its eager form, and the context of a compiled call."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import warnings
from collections.abc import Iterator

import torch

# fused=None (automatic) compiles where a compiler is found. The test suite sets this to
# False, so that only the tests of the compiled steps pay for compilations (seconds each).
AUTOMATIC = True

# Each group's shapes (and fixed hyperparameters) are one more compiled variant of the
# same function; torch's default limit of 8 would make the ninth an error.
RECOMPILE_LIMIT = 256


class FusedFallbackWarning(UserWarning):
    """A step runs eagerly although ``fused`` was None (automatic) or True: no compiler
    for torch.compile, or its compilation failed. Pass ``fused=False`` to silence it."""


@functools.cache
def compiler_missing(device_type: str) -> str | None:
    """What torch.compile lacks to compile on ``device_type``, or None when it has it.
    Cheap (looks for the compiler, runs nothing), and decided once per process."""
    if device_type == "cpu":
        if sys.platform == "win32":
            names: tuple = (os.environ.get("CXX", "cl"),)
        elif "torch._inductor.config" in sys.modules:  # set by the user, perhaps
            cxx = sys.modules["torch._inductor.config"].cpp.cxx
            names = tuple(cxx) if isinstance(cxx, list | tuple) else (cxx,)
        else:  # inductor's default, without importing it (that takes seconds)
            names = (None, os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++"))
        if None in names and os.environ.get("TORCH_INDUCTOR_INSTALL_GXX"):
            return None  # inductor installs g++ with conda
        wanted = [name for name in names if name is not None]
        if any(shutil.which(name) for name in wanted):
            return None
        return (f"no C++ compiler for torch.compile on the CPU (looked for {', '.join(wanted)}; "
                "the CXX environment variable names another)")  # fmt: skip
    if device_type in ("cuda", "xpu"):
        try:
            from torch.utils._triton import has_triton
        except ImportError:  # a torch without it: is Triton importable at all?
            import importlib.util

            found = importlib.util.find_spec("triton") is not None
        else:
            found = has_triton()
        return None if found else f"no usable Triton for torch.compile on {device_type}"
    return None  # torch.compile is tried; a failure falls back to the eager step


def compiled_step_wanted(owner: object, fused: bool | None, device_type: str) -> bool:
    """Whether ``owner`` (an optimizer) runs its compiled step: ``fused`` True, or None
    with :data:`AUTOMATIC`, a compiler for ``device_type``, and no failed compilation
    before (:func:`compile_failed`); if one was asked for and there is no compiler, a
    :class:`FusedFallbackWarning` (once) and False."""
    if fused is False or (fused is None and not AUTOMATIC):
        return False
    if getattr(owner, "_compile_failed", False):
        return False
    missing = compiler_missing(device_type)
    if missing is None:
        return True
    name = type(owner).__name__
    if fused:
        fused_fallback_notice(owner, "asked", f"{name}: fused=True was asked for, but the step "
                              f"runs eagerly: {missing}. Pass fused=False to ask for the "
                              "eager step.")  # fmt: skip
    else:
        fused_fallback_notice(owner, "auto", f"{name}: the step runs eagerly (slower), not "
                              f"compiled: {missing}. Pass fused=False to choose the eager step "
                              "without this notice.")  # fmt: skip
    return False


def compile_errors() -> tuple[type[BaseException], ...]:
    """What torch.compile raises when a graph cannot be compiled. Dynamo, AOT autograd and
    inductor raise them while tracing and compiling, before the compiled code runs
    (inductor builds every kernel of a graph when it loads the graph's module); an
    exception raised while the code runs is none of these, and propagates."""
    from torch._dynamo.exc import FailOnRecompileLimitHit, TorchDynamoException

    return TorchDynamoException, FailOnRecompileLimitHit


def compile_failed(owner: object, what: str, error: BaseException) -> None:
    """Records that compiling ``what`` (``owner``'s step) failed with ``error``: from now
    on :func:`compiled_step_wanted` says False for ``owner``, and one notice says why."""
    owner._compile_failed = True  # type: ignore[attr-defined]
    reason = f"{type(error).__name__}: {(str(error).strip() or '?').splitlines()[0]}"
    fused_fallback_notice(owner, "compile", f"{type(owner).__name__}: compiling {what} failed "
                          f"({reason[:300]}); the eager step is used from now on (pass "
                          "fused=False to skip the compilation)")  # fmt: skip


def fused_fallback_notice(owner: object, kind: str, message: str) -> None:
    """One :class:`FusedFallbackWarning` of each ``kind`` per ``owner`` (an optimizer)."""
    noticed = owner.__dict__.setdefault("_fused_notices", set())
    if kind not in noticed:
        noticed.add(kind)
        warnings.warn(message, FusedFallbackWarning, stacklevel=3)


@contextlib.contextmanager
def compiling() -> Iterator[None]:
    """The context of a call that may compile: a higher recompile limit, and torch's own
    deprecation warning of its first compilation silenced (it imports torch.utils.mkldnn,
    whose class body uses the deprecated ``@torch.jit.script_method``, torch 2.13)."""
    with (
        torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings(
            "ignore", "`torch.jit.script_method` is deprecated", DeprecationWarning
        )
        yield
