"""Where the seconds of a training step go: augmentation, forward, backward, optimiser, EMA.

Times the steps of ``esc50kit.training`` (``augment_batch``, the profile's model in its
memory format and autocast dtype, ``soft_cross_entropy``, the optimiser, ``ema_update``)
on random features of the profile's shape, after a few warm-up steps, and prints
milliseconds per batch for each part and clips per second. Features are cached, so this
is the whole cost of an epoch but its validation scoring. ``--set`` changes any setting
(as ``train_cv.py`` does), e.g. to compare inputs or widths before training with them::

    python benchmarks/profile_step.py --profile cpu-esc50
    python benchmarks/profile_step.py --profile cpu-esc50 --set features.n_mels=64
    python benchmarks/profile_step.py --profile cpu-esc50 --compile
"""
from __future__ import annotations

import argparse
import copy
import time

from esc50kit.errors import add_debug_flag, entry_point

PARTS = ("augment", "forward", "backward", "optimiser", "ema")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu-esc50")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=JSON",
                   help="override a setting, e.g. features.n_mels=64 (repeatable)")
    p.add_argument("--steps", type=int, default=30, help="timed steps (after 5 warm-up steps)")
    p.add_argument("--classes", type=int, default=50)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model first")
    add_debug_flag(p)
    return p.parse_args(argv)


@entry_point  # known errors: `error: ...` and exit 1 or 2; Ctrl-C: 130 (esc50kit.errors)
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from esc50kit.models import build_model
    from esc50kit.profiles import get_profile, parse_overrides
    from esc50kit.training import (amp_dtype, augment_batch, ema_update, make_optimizer,
                                   soft_cross_entropy, use_channels_last)

    if args.threads:
        torch.set_num_threads(args.threads)
    profile = get_profile(args.profile, {**parse_overrides(args.set), "model.n_classes": args.classes})
    cfg, device = profile.training, torch.device("cpu")
    model = build_model(profile.model)
    channels_last = use_channels_last(model, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    ema, optimizer = copy.deepcopy(model), make_optimizer(model, cfg)
    forward = torch.compile(model) if args.compile else model
    dtype = amp_dtype(cfg.amp, device)
    g = torch.Generator().manual_seed(0)
    n_bins, frames = profile.features.shape
    X, y = torch.randn(256, n_bins, frames), torch.randint(0, args.classes, (256,))
    levels = (torch.full((n_bins,), -50.0), torch.full((n_bins,), 10.0))  # dB, for mix="power"
    seconds = dict.fromkeys(PARTS, 0.0)

    def step(i: int) -> dict[str, float]:
        idx = torch.randint(0, len(X), (cfg.batch_size,), generator=g)
        t = [time.perf_counter()]
        xb, target = augment_batch(X[idx], y[idx], n_classes=args.classes, config=cfg, generator=g,
                                   levels=levels)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        t.append(time.perf_counter())
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = soft_cross_entropy(forward(xb), target)
        t.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t.append(time.perf_counter())
        optimizer.step()
        t.append(time.perf_counter())
        ema_update(ema, model, decay=cfg.ema or 0.99, step=i + 1)
        t.append(time.perf_counter())
        return {part: b - a for part, a, b in zip(PARTS, t, t[1:])}

    t0 = time.perf_counter()
    for i in range(5):
        step(i)
    warmup = time.perf_counter() - t0
    for i in range(args.steps):
        for part, s in step(i).items():
            seconds[part] += s
    total = sum(seconds.values())
    print(f"profile {args.profile} {' '.join(args.set)}: input {tuple(xb_shape(profile))}, "
          f"batch {cfg.batch_size}, amp {dtype or 'float32'}, threads {torch.get_num_threads()}"
          f"{', compiled' if args.compile else ''}; warm-up {warmup:.1f} s")
    print("  ms per batch: " + ", ".join(f"{p} {1000 * s / args.steps:.1f}"
                                         for p, s in seconds.items()))
    print(f"clips/s: {args.steps * cfg.batch_size / total:.0f}")
    return 0


def xb_shape(profile) -> tuple[int, int]:
    """(mel bands, frames) of a training input: the crop where the profile crops."""
    n_bins, frames = profile.features.shape
    crop = profile.training.crop_frames
    return n_bins, min(frames, crop) if crop else frames


if __name__ == "__main__":
    raise SystemExit(main())
