"""Bounded-memory inference: tile plans, margin-cropped stitching and a per-model memory model.

**Tiles.** The image is cut into *kept* regions that partition it; each is computed on a
*window*: the kept region plus ``margin`` pixels of context on every side where the image
has them. Only the kept part of a window's output is written, so every output pixel comes
from exactly one tile and sees at least ``margin`` pixels of context, or the image border as
untiled inference does. With a margin that covers the model's receptive field, tiled output
equals untiled output; with less (FCNs see hundreds of pixels) it is close in the interior.

**Memory model.** The peak memory of one call on a window of ``P`` pixels is modelled as
``fixed + per_pixel * P`` (:class:`MemoryModel`), found by :func:`measure_memory`:

* the bytes held by live tensors are counted exactly (a dispatch mode sees every tensor the
  call allocates and when it dies) on two small synthetic windows; for convolutional nets
  they are affine in ``P``, and the fit is rounded up to stay above both measurements;
* ``factor`` (:data:`MEMORY_FACTOR`, 2) covers what tensors do not show: scratch inside
  kernels (oneDNN's blocked copies of activations) and allocator slack: on CPU the peak
  resident memory of the shipped x8 depth network was 1.3x-1.6x its live tensor bytes on
  512-1024 px windows;
* ``fixed`` adds the model's largest parameter: on CPU, oneDNN copies a convolution's weight
  into its own layout at every call (392 MiB for FCN-8s's ``fc6``).

**Budget.** A plan keeps ``in_use + outputs + model(window) <= budget``, where ``in_use`` is
the memory the process holds when planning (:func:`memory_in_use`: resident set on CPU,
allocated device memory on CUDA) and ``outputs`` the whole-image buffers stitching fills.
:func:`tiles_for_budget` picks the largest tile that fits, or no tiling when the whole image
does, and otherwise says which budget would do.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import sys
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

# The base class torch's own docs use for __torch_dispatch__ modes (no public alias yet);
# also what scripts/bench_pac.py counts memory with.
from torch.utils._python_dispatch import TorchDispatchMode

from densepac.errors import InputError

_log = logging.getLogger(__name__)

#: Multiplier on live tensor bytes for what tensors do not show (kernel scratch, allocator slack).
MEMORY_FACTOR = 2.0
#: Spare a suggested smallest budget keeps over its estimate, for run-to-run noise in the memory in use.
SUGGESTION_HEADROOM = 1.02

_UNITS = {
    "": 2**20,
    "b": 1,
    "k": 2**10,
    "kib": 2**10,
    "kb": 10**3,
    "m": 2**20,
    "mib": 2**20,
    "mb": 10**6,
    "g": 2**30,
    "gib": 2**30,
    "gb": 10**9,
    "t": 2**40,
    "tib": 2**40,
    "tb": 10**12,
}


def parse_memory(text: str) -> int:
    """Bytes of a memory size written by a person: ``"2GiB"``, ``"1500MB"``, ``"1.5G"``, ``"800"`` (MiB).

    ``KiB``/``MiB``/``GiB`` and the bare ``K``/``M``/``G`` are powers of 1024; ``KB``/``MB``/``GB``
    powers of 1000; a plain number is MiB. Case and a space before the unit do not matter.
    Raises InputError.
    """
    if not isinstance(text, str):
        raise InputError(f"memory size must be a string like 2GiB, got {text!r}")
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if m is None:
        raise InputError(f"{text!r} is not a memory size; write e.g. 2GiB, 1500MB or 800 (MiB)")
    unit = m.group(2).lower()
    if unit not in _UNITS:
        raise InputError(f"{text!r}: unknown unit {m.group(2)!r}; use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB")
    size = float(m.group(1)) * _UNITS[unit]
    if not math.isfinite(size) or size < 1:
        raise InputError(f"{text!r} is not a positive memory size; write e.g. 2GiB, 1500MB or 800 (MiB)")
    return int(size)


def budget_bytes(max_memory: int | str) -> int:
    """A memory budget in bytes: an int is bytes already, a string goes through :func:`parse_memory`."""
    if isinstance(max_memory, int) and not isinstance(max_memory, bool):
        if max_memory < 1:
            raise InputError(f"memory budget must be a positive number of bytes, got {max_memory}")
        return max_memory
    return parse_memory(max_memory)


def format_memory(nbytes: float) -> str:
    """``"812 MiB"`` (``"1.4 MiB"`` below 100 MiB), rounded up so that a stated minimum is enough."""
    mib = nbytes / 2**20
    return f"{math.ceil(mib)} MiB" if mib >= 100 else f"{math.ceil(mib * 10) / 10:g} MiB"


@dataclass(frozen=True)
class Tile:
    """One tile, in input pixels: the kept region ``[y0, y1) x [x0, x1)`` and its window ``[wy0, wy1) x [wx0, wx1)``."""

    y0: int
    y1: int
    x0: int
    x1: int
    wy0: int
    wy1: int
    wx0: int
    wx1: int

    def window(self, scale: int = 1) -> tuple[slice, slice]:
        """Slices of the window in an array ``scale`` times the input size (e.g. an HR guide)."""
        return slice(self.wy0 * scale, self.wy1 * scale), slice(self.wx0 * scale, self.wx1 * scale)

    def kept(self, scale: int = 1) -> tuple[slice, slice]:
        """Slices of the kept region in the (scaled) whole image."""
        return slice(self.y0 * scale, self.y1 * scale), slice(self.x0 * scale, self.x1 * scale)

    def crop(self, scale: int = 1) -> tuple[slice, slice]:
        """Slices of the kept region inside the (scaled) window."""
        return (
            slice((self.y0 - self.wy0) * scale, (self.y1 - self.wy0) * scale),
            slice((self.x0 - self.wx0) * scale, (self.x1 - self.wx0) * scale),
        )

    @property
    def window_pixels(self) -> int:
        return (self.wy1 - self.wy0) * (self.wx1 - self.wx0)


def _pair(tile: int | Sequence[int]) -> tuple[int, int]:
    th, tw = (tile, tile) if isinstance(tile, int) else tuple(tile)
    return int(th), int(tw)


def plan_tiles(size: tuple[int, int], tile: int | Sequence[int], margin: int = 0, align: int = 1) -> list[Tile]:
    """Tiles of an image of ``size`` (H, W), row by row.

    Args:
        tile: kept tile size, an int or (th, tw); unless it spans the image, rounded down to
            a multiple of ``align`` (at least ``align``). The last row and column of tiles
            may be smaller.
        margin: context on each side, rounded up to a multiple of ``align``.
        align: every kept and window edge inside the image lies on this grid (e.g. a
            network's output stride, so tiles pool on the grid the whole image pools on).
    """
    (h, w), (th, tw) = size, _pair(tile)
    if h < 1 or w < 1:
        raise InputError(f"image size must be positive, got {h}x{w}")
    if th < 1 or tw < 1 or margin < 0 or align < 1:
        raise InputError(f"tile={tile} must be positive, margin={margin} non-negative and align={align} positive")
    th = h if th >= h else max(align, th // align * align)
    tw = w if tw >= w else max(align, tw // align * align)
    margin = _round_up(margin, align)
    return [
        Tile(
            y0,
            min(y0 + th, h),
            x0,
            min(x0 + tw, w),
            max(0, y0 - margin),
            min(h, y0 + th + margin),
            max(0, x0 - margin),
            min(w, x0 + tw + margin),
        )
        for y0 in range(0, h, th)
        for x0 in range(0, w, tw)
    ]


def run_tiles(
    fn: Callable[[Tile], torch.Tensor],
    size: tuple[int, int],
    tile: int | Sequence[int],
    margin: int = 0,
    align: int = 1,
    scale: int = 1,
    progress: bool = False,
    desc: str = "tiles",
) -> torch.Tensor:
    """Stitch ``fn(tile)`` over the tiles of ``size``: each output's kept part goes to its place.

    ``fn`` returns a tensor ``(..., window_h * scale, window_w * scale)`` for a tile's window;
    the result is ``(..., H * scale, W * scale)``, allocated on the first tile's dtype and
    device. ``progress`` shows a tqdm bar over the tiles when there are several and stderr is
    a terminal.
    """
    from tqdm.auto import tqdm

    tiles = plan_tiles(size, tile, margin, align)
    out, settled = None, None
    for t in tqdm(tiles, desc=desc, leave=False, disable=None if progress and len(tiles) > 1 else True):
        part = fn(t)
        if out is None:
            out = part.new_empty(*part.shape[:-2], size[0] * scale, size[1] * scale)
        out[(..., *t.kept(scale))] = part[(..., *t.crop(scale))]
        del part
        held = _resident_bytes() if len(tiles) > 1 and out.device.type == "cpu" else None
        if held is not None:
            # Freed memory the heap keeps makes the resident set creep up tile after tile;
            # it is handed back when the creep passes CREEP_LIMIT (each return costs page
            # faults on the next tile, so not after every tile).
            settled = held if settled is None else settled
            if held > settled + CREEP_LIMIT:
                release_free_memory()
                settled = _resident_bytes()
    return out


#: Growth of the resident set between tiles beyond which free heap memory is returned.
CREEP_LIMIT = 64 * 2**20


class LiveTensorBytes(TorchDispatchMode):
    """Inside ``with``, tracks the bytes of the tensor storages that ops allocate and the peak of their sum.

    Storages made before the mode are not counted (weights, inputs). A storage counts until
    its last tensor dies. Exact and allocator-independent; kernel-internal scratch is unseen.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Else torch wraps __torch_dispatch__ in dynamo.disable, whose first call imports
        # torch._dynamo (sympy, triton, ...): 150 MiB of resident memory and a second of
        # start-up, paid by the very planning that is to keep memory low. Never compiled here.
        return False

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[int, int] = {}

    def _release(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self._live:
                    self._live[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    weakref.finalize(storage, self._release, key)
        self.peak = max(self.peak, self.current)
        return out


@dataclass(frozen=True)
class MemoryModel:
    """Peak bytes of one model call on a window of ``pixels`` input pixels: ``fixed + per_pixel * pixels``."""

    fixed: float
    per_pixel: float

    def __call__(self, pixels: int) -> int:
        return math.ceil(self.fixed + self.per_pixel * pixels)

    def max_pixels(self, available: float) -> int:
        """The largest window (pixels) whose estimate fits in ``available`` bytes; 0 if none."""
        if available < self.fixed:
            return 0
        return sys.maxsize if self.per_pixel <= 0 else int((available - self.fixed) // self.per_pixel)


def measure_memory(
    make_inputs: Callable[[int, int], tuple],
    run: Callable[..., object],
    sizes: Sequence[tuple[int, int]],
    fixed: float = 0.0,
    factor: float = MEMORY_FACTOR,
) -> MemoryModel:
    """Fit a :class:`MemoryModel` to the live tensor bytes of ``run(*make_inputs(h, w))`` at two window sizes.

    ``make_inputs`` runs outside the count (inputs of a real tile are views of the whole
    image); ``sizes`` are two (h, w) of different areas, in the pixels the planner counts.
    The affine fit is raised to stay at or above both measurements, then scaled by
    ``factor``; ``fixed`` is added as is.
    """
    if len(sizes) != 2 or sizes[0][0] * sizes[0][1] == sizes[1][0] * sizes[1][1]:
        raise ValueError(f"measure_memory needs two window sizes of different areas, got {sizes}")
    points = []
    for h, w in sizes:
        inputs = make_inputs(h, w)
        with LiveTensorBytes() as mode:
            run(*inputs)
        points.append((h * w, mode.peak))
        del inputs
    (p1, b1), (p2, b2) = sorted(points)
    slope = max(0.0, (b2 - b1) / (p2 - p1))
    intercept = max(0.0, b1 - slope * p1)
    return MemoryModel(fixed + factor * intercept, factor * slope)


def largest_tensor_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's largest parameter or buffer (a weight oneDNN may copy at every call)."""
    tensors = [*model.parameters(), *model.buffers()]
    return max((t.numel() * t.element_size() for t in tensors), default=0)


def _resident_bytes() -> int | None:
    """The resident set now (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        import os

        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def memory_in_use(device: torch.device | str = "cpu") -> int:
    """Bytes the process holds now: allocated CUDA memory, or the resident set on CPU.

    On CPU this reads ``/proc/self/statm`` (Linux); elsewhere the peak resident set so far,
    which is at least the current one.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    resident = _resident_bytes()
    if resident is not None:
        return resident
    peak = peak_memory(device)
    if peak is None:
        raise InputError(
            "this platform does not report the process's memory use, so a memory budget cannot be "
            "planned; give a tile size instead"
        )
    return peak


def peak_memory(device: torch.device | str = "cpu") -> int | None:
    """The process's peak so far: max allocated CUDA memory, or the peak resident set on CPU (None: unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def warn_if_over(budget: int, device: torch.device | str = "cpu") -> None:
    """Log a warning when the process went past ``budget`` before tiling could help
    (Python and torch themselves, the model's weights, the input)."""
    peak = peak_memory(device)
    if peak is not None and peak > budget:
        _log.warning(
            "memory budget %s: this process already peaked at %s before inference (Python, torch, the "
            "model's weights and the input), above the budget",
            format_memory(budget),
            format_memory(peak),
        )


def tiles_for_budget(
    size: tuple[int, int],
    budget: int,
    in_use: int,
    outputs: int,
    memory: MemoryModel,
    margin: int,
    align: int = 1,
    min_tile: int = 1,
    what: str = "this model",
    unit: str = "px",
    check: Callable[[int, int], Callable[[], object]] | None = None,
    device: torch.device | str = "cpu",
    after: int = 0,
) -> tuple[int, int] | None:
    """The largest kept tile (th, tw) whose window fits ``budget``, or None when the whole image fits.

    Args:
        size: (H, W) of the image, in the pixels ``memory`` counts.
        budget: bytes the process may hold at its peak.
        in_use: bytes it holds already (:func:`memory_in_use`).
        outputs: bytes of the whole-image buffers stitching allocates (not needed untiled:
            there the model's own output is part of ``memory``).
        after: bytes the steps after the model hold at their peak beyond ``in_use`` (its
            output included): writing files, drawing overlays. Tiled or not, the budget
            must hold them too.
        memory: the model's :class:`MemoryModel`.
        margin, align: as :func:`plan_tiles` (the margin is rounded up to ``align`` here too).
        min_tile: the smallest kept tile worth running (it is rounded up to ``align``).
        check: ``check(h, w)`` makes the inputs of a window of (h, w) pixels and returns a
            function that runs the model on them. When given, a window of half the planned
            one's area is run and the memory it really adds measured (:func:`peak_added_by`,
            inputs excluded);
            if that, with :data:`CHECK_SPARE`, exceeds the estimate, a window of a quarter its
            area is measured too, ``memory`` is refitted to the two (:func:`_measured`) and the
            tiles planned again (kernel scratch and allocator slack vary with the thread count
            and the window size more than the estimate's factor covers).

    Tiles are balanced: with ``n`` tiles along an axis, each is about ``size / n``. Windows
    are square unless one side spans the image, whose other side then gets the rest.

    Raises:
        InputError: no tile of at least ``min_tile`` fits; the message gives the budget that would.
    """

    def plan(model: MemoryModel, log: bool = True) -> tuple[int, int] | None:
        return _plan(size, budget, in_use, outputs, model, margin, align, min_tile, what, unit, after, log)

    if check is None:
        return plan(memory)
    m = _round_up(margin, align)
    try:
        tile = plan(memory, log=False)
    except InputError:
        # Too small even by the estimate: check the smallest window, so that the budget the
        # error suggests is one that works.
        tile = (_round_up(max(1, min_tile), align),) * 2
    else:
        if tile is None:
            return plan(memory)
    wh, ww = min(size[0], tile[0] + 2 * m), min(size[1], tile[1] + 2 * m)
    # Half the planned window's area: the check must not itself break the budget when the
    # estimate is optimistic, and the overhead measured is relatively larger on smaller windows.
    wh, ww = max(1, round(wh / math.sqrt(2))), max(1, round(ww / math.sqrt(2)))
    # Tiles in a row add more than a fresh window: up to CREEP_LIMIT of freed heap the
    # stitching loop lets pass before returning it, and about 30 % more (measured: 376 MiB
    # per tile against 287 MiB fresh for 544 px segmentation windows).
    creep = CREEP_LIMIT if torch.device(device).type == "cpu" else 0
    added = peak_added_by(check(wh, ww), device)
    if added is None or CHECK_SPARE * added + creep <= memory(wh * ww):
        return plan(memory)
    _log.info("memory budget: a %dx%d window added %s, more than estimated", ww, wh, format_memory(added))
    # Whether the excess grows with the window (scratch per pixel) or comes once per call (a
    # large layer's weights reordered for its kernel) decides the plan: a smaller window tells.
    points = [(wh * ww, added)]
    sh, sw = max(1, wh // 2), max(1, ww // 2)
    if sh * sw < wh * ww and (small := peak_added_by(check(sh, sw), device)) is not None:
        points.append((sh * sw, small))
    return plan(_measured(memory, points, creep))


def _measured(memory: MemoryModel, points: list[tuple[int, int]], creep: int) -> MemoryModel:
    """``memory`` replaced by what windows of (pixels, bytes added) really needed.

    A line through the points, its per-pixel part times :data:`CHECK_SPARE` and ``creep`` added
    to its fixed part; the fixed part never falls below ``memory``'s. With two points the
    measured per-pixel part stands even below the estimate's (whose factor for scratch is a
    guess), down to the live tensor bytes alone (``memory``'s over :data:`MEMORY_FACTOR`),
    which every window allocates; through one point the line is flat and the estimate's stays.
    """
    (p1, b1), *rest = sorted(points, reverse=True)
    slope = max(0.0, (b1 - rest[0][1]) / (p1 - rest[0][0])) if rest else 0.0
    fixed = max(b - slope * p for p, b in points)
    floor = memory.per_pixel / MEMORY_FACTOR if rest else memory.per_pixel
    return MemoryModel(max(memory.fixed, fixed + creep), max(floor, CHECK_SPARE * slope))


#: Factor on the memory a checked window really added, for what tiles in a row add beyond it.
CHECK_SPARE = 1.3


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim``; elsewhere nothing).

    Between tiles (:func:`run_tiles`): otherwise the resident set creeps up tile after
    tile with freed but unreturned memory (measured: +500 MiB over 170 segmentation tiles).
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - musl and others lack it
    except (OSError, AttributeError):
        return None
    return libc


def peak_added_by(run: Callable[[], object], device: torch.device | str = "cpu") -> int | None:
    """Bytes ``run()`` (in inference mode) adds to the process at its peak, or None where that cannot be measured.

    CUDA: peak allocated memory. CPU: the peak resident set (``VmHWM``, reset through
    ``/proc/self/clear_refs``; Linux), free heap pages returned first so that ``run`` cannot
    hide in them.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with torch.inference_mode():
            run()
        return max(0, torch.cuda.max_memory_allocated(device) - base)
    release_free_memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    base = memory_in_use(device)
    with torch.inference_mode():
        run()
    try:
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return max(0, peak - base)


def _plan(
    size: tuple[int, int],
    budget: int,
    in_use: int,
    outputs: int,
    memory: MemoryModel,
    margin: int,
    align: int,
    min_tile: int,
    what: str,
    unit: str,
    after: int = 0,
    log: bool = True,
) -> tuple[int, int] | None:
    """:func:`tiles_for_budget` for one memory model; ``log``: say the plan (INFO)."""
    say = _log.info if log else _log.debug
    h, w = size
    if in_use + max(memory(h * w), after) <= budget:
        say(
            "memory budget %s: the whole %dx%d %s image fits (estimated peak %s)",
            format_memory(budget),
            w,
            h,
            unit,
            format_memory(in_use + max(memory(h * w), after)),
        )
        return None
    margin = _round_up(margin, align)
    min_tile = _round_up(max(1, min_tile), align)
    pixels = memory.max_pixels(budget - in_use - outputs)

    def kept(window: int, extent: int) -> int:
        # A window spanning the image needs no margin on that axis.
        return extent if window >= extent else (window - 2 * margin) // align * align

    side = math.isqrt(min(pixels, h * w))
    wy, wx = min(h, side), min(w, side)
    if wy == h:
        wx = min(w, pixels // max(1, wy))
    elif wx == w:
        wy = min(h, pixels // max(1, wx))
    th, tw = kept(wy, h), kept(wx, w)
    if th < min(min_tile, h) or tw < min(min_tile, w) or in_use + after > budget:
        smallest = memory(min(h, min_tile + 2 * margin) * min(w, min_tile + 2 * margin))
        # The memory in use differs by a few MiB from run to run: the suggestion keeps 2 % spare.
        enough = SUGGESTION_HEADROOM * (in_use + max(outputs + smallest, after))
        raise InputError(
            f"a memory budget of {format_memory(budget)} is too small for {what} on a {w}x{h} {unit} image: "
            f"give at least {format_memory(enough)} ({format_memory(in_use)} in use, "
            f"{format_memory(outputs)} for the output, {format_memory(smallest)} for the smallest tile)"
        )
    ny, nx = -(-h // th), -(-w // tw)
    th, tw = _balanced(h, ny, align), _balanced(w, nx, align)
    window = min(h, th + 2 * margin) * min(w, tw + 2 * margin)
    say(
        "memory budget %s: tiles of %dx%d %s, %d tiles (estimated peak %s)",
        format_memory(budget),
        tw,
        th,
        unit,
        -(-h // th) * -(-w // tw),
        format_memory(in_use + max(outputs + memory(window), after)),
    )
    return th, tw


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _balanced(extent: int, count: int, align: int) -> int:
    """Tile size splitting ``extent`` into ``count`` near-equal tiles, rounded up to ``align``."""
    return extent if count == 1 else _round_up(-(-extent // count), align)


# Memory models measured per model object (activations do not depend on the weights' values).
_MEMORY_MODELS: weakref.WeakKeyDictionary[torch.nn.Module, dict] = weakref.WeakKeyDictionary()


def cached_memory_model(model: torch.nn.Module, key: tuple, measure: Callable[[], MemoryModel]) -> MemoryModel:
    """``measure()`` once per model object and ``key`` (device, scale, ...); later calls reuse it."""
    cached = _MEMORY_MODELS.setdefault(model, {})
    if key not in cached:
        cached[key] = measure()
    return cached[key]
