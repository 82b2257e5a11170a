"""CPU speed of our SegFormer vs transformers' (same weights), and B5 sliding-window cost.

Usage: ``python benchmarks/bench_models.py [--variants b0 b2] [--repeats 5] [--threads N]``

1. For each variant: a randomly initialised transformers ``SegformerForSemanticSegmentation``
   and ours loaded from its state dict (so the weights are identical), fp32, eval, one
   1x3x512x1024 input, same ``torch.set_num_threads``; one warm-up run each, then ``repeats``
   runs alternating between the two; the median is reported, with the ratio HF / ours and the
   max |logit difference|.
2. B5 sliding-window inference (crop 1024, stride 768) on one 1024x2048 image, in a fresh
   subprocess, so that its peak resident memory (``VmHWM``, else ``getrusage().ru_maxrss``)
   is its own.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robustbench_seg.models import load  # noqa: E402
from robustbench_seg.models.segformer import SEGFORMER_CONFIGS  # noqa: E402


def _hf_model(variant: str):
    import transformers

    cfg = SEGFORMER_CONFIGS[variant]
    enc = cfg.encoder
    hf_cfg = transformers.SegformerConfig(
        num_labels=19,
        hidden_sizes=list(enc.embed_dims),
        depths=list(enc.depths),
        decoder_hidden_size=cfg.decoder_dim,
    )
    torch.manual_seed(0)
    return transformers.SegformerForSemanticSegmentation(hf_cfg).eval()


def _time(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def compare(variant: str, repeats: int, height: int, width: int) -> dict:
    """Median forward time of transformers' and our SegFormer-``variant`` on one image."""
    import tempfile

    hf = _hf_model(variant)
    with tempfile.TemporaryDirectory() as tmp:  # the user's path: save_pretrained -> load
        hf.save_pretrained(tmp)
        ours = load(f"segformer-{variant}", tmp).module.eval()
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref, out = hf(pixel_values=x).logits, ours(x)  # warm-up
        delta = (ref - out).abs().max().item()
        t_hf, t_ours = [], []
        for _ in range(repeats):  # alternate so that load changes hit both alike
            t_hf += _time(lambda: hf(pixel_values=x), 1)
            t_ours += _time(lambda: ours(x), 1)
    med_hf, med_ours = statistics.median(t_hf), statistics.median(t_ours)
    return {
        "variant": variant,
        "hf_s": med_hf,
        "ours_s": med_ours,
        "speedup": med_hf / med_ours,
        "max_abs_delta": delta,
    }


def _peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    ``VmHWM`` (Linux) belongs to this process image alone; ``getrusage().ru_maxrss`` also
    counts the parent's peak from before ``exec`` on Linux, so it is only the fallback.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _slide_child(threads: int) -> None:
    torch.set_num_threads(threads)
    from robustbench_seg.engine.inference import predict_logits

    model = load("segformer-b5").module.eval()
    x = torch.randn(1, 3, 1024, 2048)
    rss_model = _peak_rss_mib()
    t0 = time.perf_counter()
    out = predict_logits(model, x, mode="slide", crop=1024, stride=768, batch_size=1)
    elapsed = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "peak_rss_mib": _peak_rss_mib(),
                "rss_after_build_mib": rss_model,
                "shape": list(out.shape),
            }
        )
    )


def slide_b5(threads: int) -> dict:
    """Runs B5 sliding-window inference in a subprocess; returns time and peak RSS."""
    proc = subprocess.run(
        [sys.executable, __file__, "--_slide-child", "--threads", str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["b0", "b2"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--no-slide", action="store_true", help="skip the B5 sliding-window run")
    parser.add_argument("--_slide-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._slide_child:
        _slide_child(args.threads)
        return

    torch.set_num_threads(args.threads)
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"threads={args.threads}, input 1x3x{args.height}x{args.width}, fp32, "
        f"median of {args.repeats} after 1 warm-up"
    )
    print("| model | transformers (s) | ours (s) | speed-up | max abs diff |")
    print("|---|---:|---:|---:|---:|")
    # The subprocess runs first, while this process is still small.
    slide = None if args.no_slide else slide_b5(args.threads)
    for v in args.variants:
        r = compare(v, args.repeats, args.height, args.width)
        print(
            f"| SegFormer-{v.upper()} | {r['hf_s']:.3f} | {r['ours_s']:.3f} | "
            f"{r['speedup']:.2f}x | {r['max_abs_delta']:.1e} |",
            flush=True,
        )
    if slide is not None:
        s = slide
        print()
        print("| SegFormer-B5 slide 1024/768, 1x3x1024x2048 | time (s) | peak RSS (MiB) |")
        print("|---|---:|---:|")
        print(f"| fp32 CPU, batch 1, 3 windows | {s['seconds']:.1f} | {s['peak_rss_mib']:.0f} |")
        print(f"(RSS after building the model: {s['rss_after_build_mib']:.0f} MiB)")


if __name__ == "__main__":
    main()
