"""Training speed: esc50kit's loop against a plain PyTorch loop, in one run.

Both loops train the same model (the profile's) on the same normalised features with the
same batch size and the same training augmentation (``esc50kit.training.augment_batch``:
random crop, SpecAugment, mixup), for the same number of epochs, on the same device.
They differ in what esc50kit does for speed:

* the plain loop is the textbook one: a ``DataLoader`` over a ``TensorDataset`` on the
  host, each batch copied to the device, float32, the default (NCHW) memory format;
* ``esc50kit.training.fit`` keeps the whole training set on the device and indexes
  batches there, runs channels-last (on CUDA and on the CPU) and mixed precision (on
  CUDA); it also keeps an EMA of the weights when the profile asks for one.

Printed: clips per second of each (training steps only; ``fit``'s per-epoch validation
scoring is excluded, as its ``samples_per_s`` always is) and their ratio; the LAST line
is ``speed-up: <ratio>x``. Speed does not depend on what the features contain, so
without ``--data`` the loops train on random features of the profile's shape (e.g. on a
GPU machine that has no copy of the audio)::

    python benchmarks/bench_train_loop.py --data ../shared/data/ESC-10 --profile cpu-cv
    python benchmarks/bench_train_loop.py --profile full --clips 1600 --epochs 3
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from esc50kit.errors import add_debug_flag, entry_point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None,
                   help="dataset root: train on its folds 1-3 (cached features); "
                        "default: random features of the profile's shape")
    p.add_argument("--profile", default="cpu-cv", help="tiny, quick, cpu-cv, full, ...")
    p.add_argument("--clips", type=int, default=240,
                   help="training clips without --data (240: three ESC-10 folds; "
                        "1200: three ESC-50 folds)")
    p.add_argument("--epochs", type=int, default=3, help="epochs timed for each loop")
    p.add_argument("--artifacts", default="artifacts", help="feature cache (with --data)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    add_debug_flag(p)
    return p.parse_args(argv)


def training_features(args, profile):
    """Normalised training features, labels, the class count and the dB levels (mean, std)
    per bin that ``mix="power"`` needs: (X of shape (N, n_bins, frames), y (N,), int, tuple)."""
    import numpy as np

    if args.data is None:
        g = np.random.default_rng(0)
        n_bins, frames = profile.features.shape
        n_classes = 50 if args.clips > 400 else 10
        return (g.standard_normal((args.clips, n_bins, frames), dtype=np.float32),
                np.arange(args.clips) % n_classes, n_classes,
                (np.full(n_bins, -50.0), np.full(n_bins, 10.0)))  # typical dB: same cost
    from esc50kit.cache import load_or_compute
    from esc50kit.data import load_metadata
    from esc50kit.experiment import FEATURES_DIRNAME
    from esc50kit.features import Normalizer

    df = load_metadata(args.data)
    rows = df["fold"].isin([1, 2, 3]).to_numpy()
    X = load_or_compute(df, profile.features, cache_dir=Path(args.artifacts) / FEATURES_DIRNAME,
                        progress=False).X[rows]
    norm = Normalizer.fit(X)
    return norm.transform(X), df["label"].to_numpy()[rows], df["label"].nunique(), (norm.mean, norm.std)


def plain_loop(model, X, y, *, config, n_classes, device, levels) -> float:
    """The textbook loop. Returns training clips per second."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from esc50kit.training import augment_batch, make_optimizer, soft_cross_entropy

    model.to(device).train()
    optimizer = make_optimizer(model, config)
    loader = DataLoader(TensorDataset(torch.as_tensor(X), torch.as_tensor(y)),
                        batch_size=config.batch_size, shuffle=True, drop_last=True)
    gen = torch.Generator().manual_seed(1)
    seen, t0 = 0, time.perf_counter()
    for _ in range(config.epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            xb, target = augment_batch(xb, yb, n_classes=n_classes, config=config, generator=gen,
                                       levels=levels)
            loss = soft_cross_entropy(model(xb), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(yb)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


@entry_point  # known errors: `error: ...` and exit 1 or 2; Ctrl-C: 130 (esc50kit.errors)
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from esc50kit.models import build_model
    from esc50kit.profiles import get_profile
    from esc50kit.training import choose_device, fit

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    profile = get_profile(args.profile, {"training.epochs": args.epochs})
    X, y, n_classes, levels = training_features(args, profile)
    model_config = replace(profile.model, n_classes=n_classes)
    device = choose_device(profile.training.device)
    print(f"profile {profile.name}: {model_config.arch} width {model_config.width}, input "
          f"{X.shape[1:]}, {len(X)} training clips, batch {profile.training.batch_size}, "
          f"{args.epochs} epochs per loop; device {device}, torch threads {torch.get_num_threads()}"
          + ("" if args.data else "; random features"))

    torch.manual_seed(0)
    plain = plain_loop(build_model(model_config), X, y, config=profile.training,
                       n_classes=n_classes, device=device, levels=levels)
    print(f"plain PyTorch loop (DataLoader, float32, NCHW): {plain:.1f} clips/s")
    torch.manual_seed(0)  # validation rows are a slice of the training rows: speed only
    result = fit(build_model(model_config), X, y, X[:64], y[:64], config=profile.training,
                 progress=False, levels=levels)
    print(f"esc50kit fit (features on the device, channels-last, AMP on CUDA"
          f"{', EMA' if profile.training.ema else ''}): {result.samples_per_s:.1f} clips/s")
    print(f"speed-up: {result.samples_per_s / plain:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
