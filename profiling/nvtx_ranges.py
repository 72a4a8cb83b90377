"""Named stage ranges (preprocess, backbone, encoder, decoder, heads, postprocess) for profilers.

`stage(name)` opens a `torch.profiler.record_function` label (seen by torch.profiler) and, when asked
for, an NVTX range (seen by Nsight Systems) and a wall-clock timer (the low-overhead stage timings).
Outside `ranges_enabled()` it returns one shared `nullcontext`, touching none of them, so instrumented
code costs next to nothing while it is being timed (`python -m profiling.overhead` measures it).
`instrument_detr(model)` opens the same ranges around the blocks of a Hugging Face DETR with forward hooks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from optim.errors import MissingExtraError, OptimError

NULL_RANGE = contextlib.nullcontext()  # what `stage` returns while profiling is off: shared, reusable


@dataclass(frozen=True)
class _Mode:
    """What an open range emits while profiling is on."""

    push: Callable[[str], object] | None  # NVTX push/pop, None = no NVTX
    pop: Callable[[], object] | None
    seconds: dict[str, float] | None  # wall seconds summed per stage name, None = no timing
    labels: bool  # open torch.profiler record_function labels
    synchronize: Callable[[], object] | None  # waits for the device at each timed range's edges, None = host only


_MODE: ContextVar[_Mode | None] = ContextVar("optim_profiling_ranges", default=None)


def _nvtx_functions() -> tuple[Callable[[str], object], Callable[[], object]]:
    """torch.cuda.nvtx on a CUDA machine (the ranges then line up with CUDA kernels in nsys), else the `nvtx`
    package, which needs no GPU."""
    if torch.cuda.is_available():
        return torch.cuda.nvtx.range_push, torch.cuda.nvtx.range_pop
    try:
        import nvtx
    except ImportError as error:
        raise MissingExtraError("nvtx", "profile", "NVTX stage ranges") from error
    return (lambda name: nvtx.push_range(message=name, domain="optim")), (lambda: nvtx.pop_range(domain="optim"))


def is_enabled() -> bool:
    """Whether `stage` currently opens ranges."""
    return _MODE.get() is not None


@contextlib.contextmanager
def ranges_enabled(nvtx: bool = False, seconds: dict[str, float] | None = None,
                   labels: bool = True, cuda: bool = False) -> Iterator[None]:
    """Within this block, `stage` opens record_function labels, plus NVTX ranges when `nvtx` is true
    (NVTX ranges are only visible under an Nsight tool: `nsys profile -t nvtx,...` or `ncu --nvtx`), and adds
    each range's wall time to `seconds[name]` when a dict is given; `labels=False` skips the record_function
    labels (a timing-only pass needs no profiler labels). `cuda=True` makes each timed range wait for the GPU
    at its edges, so that it times the kernels it launched rather than their asynchronous launch."""
    push, pop = _nvtx_functions() if nvtx else (None, None)
    synchronize = torch.cuda.synchronize if cuda and seconds is not None else None
    token = _MODE.set(_Mode(push, pop, seconds, labels, synchronize))
    try:
        yield
    finally:
        _MODE.reset(token)


class _Range:
    """One open stage: a record_function label and, optionally, an NVTX range."""

    __slots__ = ("label", "mode", "name", "start")

    def __init__(self, name: str, mode: _Mode):
        self.name = name
        self.mode = mode
        self.label = None
        self.start = 0.0

    def __enter__(self) -> None:  # like the nullcontext it stands in for
        if self.mode.push is not None:
            self.mode.push(self.name)
        if self.mode.labels:
            self.label = torch.profiler.record_function(self.name)
            self.label.__enter__()
        if self.mode.synchronize is not None:
            self.mode.synchronize()
        self.start = time.perf_counter()

    def __exit__(self, *exc_info) -> None:
        if self.mode.synchronize is not None:
            self.mode.synchronize()
        if self.mode.seconds is not None:
            self.mode.seconds[self.name] = self.mode.seconds.get(self.name, 0.0) + time.perf_counter() - self.start
        if self.label is not None:
            self.label.__exit__(None, None, None)
        if self.mode.pop is not None:
            self.mode.pop()


def stage(name: str) -> contextlib.AbstractContextManager:
    """A context manager marking `name` for profilers; the shared `NULL_RANGE` while profiling is off."""
    mode = _MODE.get()
    if mode is None:
        return NULL_RANGE
    return _Range(name, mode)


# Which top-level modules of DetrForObjectDetection make up each stage.
DETR_STAGE_MODULES: dict[str, tuple[str, ...]] = {
    "backbone": ("model.backbone", "model.input_projection", "model.position_embedding"),
    "encoder": ("model.encoder",),
    "decoder": ("model.decoder",),
    "heads": ("class_labels_classifier", "bbox_predictor"),
}


class StageHooks:
    """Forward hooks opening stage ranges around DETR's blocks; `remove()` takes them all off."""

    def __init__(self, compiled: bool = False) -> None:
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self.open: dict[str, list[contextlib.AbstractContextManager]] = {}
        self.compiled = compiled

    def add(self, module: torch.nn.Module, name: str) -> None:
        self.open.setdefault(name, [])
        enter, exit_ = (lambda *_: self._enter(name)), (lambda *_: self._exit(name))
        if self.compiled:
            # TorchDynamo drops record_function calls it traces; run the hooks eagerly instead, which breaks
            # the compiled graph at block boundaries (the price of seeing the blocks).
            enter, exit_ = torch._dynamo.disable(enter), torch._dynamo.disable(exit_)
        self.handles.append(module.register_forward_pre_hook(enter))
        # always_call: a forward that raises still closes its range, so ranges never leak.
        self.handles.append(module.register_forward_hook(exit_, always_call=True))

    def _enter(self, name: str) -> None:
        opened = self.open[name]
        # A stage entered from inside itself (nested modules of one block) is timed once, by the outer range.
        current = stage(name) if not opened else NULL_RANGE
        current.__enter__()
        opened.append(current)

    def _exit(self, name: str) -> None:
        opened = self.open[name]
        if opened:
            opened.pop().__exit__(None, None, None)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def detr_root(model: torch.nn.Module) -> torch.nn.Module:
    """The DetrForObjectDetection inside an engine's module (torch.compile wraps it as `_orig_mod`)."""
    return getattr(model, "_orig_mod", model)


def instrument_detr(model: torch.nn.Module) -> StageHooks:
    """Hook DETR's blocks so that each forward opens its stage range (a no-op while profiling is off).
    On a torch.compile'd model the hooks run outside the compiled code, splitting it at block boundaries."""
    root = detr_root(model)
    hooks = StageHooks(compiled=root is not model)
    for name, paths in DETR_STAGE_MODULES.items():
        for path in paths:
            try:
                module = root.get_submodule(path)
            except AttributeError:  # e.g. a pruned model without one of the blocks: nothing to time there
                continue
            hooks.add(module, name)
    if not hooks.handles:
        hooks.remove()
        raise OptimError(f"{type(root).__name__} has none of DETR's blocks ({', '.join(DETR_STAGE_MODULES)})",
                         field="model", fix="stage profiling needs a Hugging Face DetrForObjectDetection")
    return hooks
