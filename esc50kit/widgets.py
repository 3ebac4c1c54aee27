"""ipywidgets explorers for the notebooks, each with a static twin for headless runs.

With ``interactive=True`` (a person in Jupyter) the functions return a live widget.
With ``interactive=False`` (papermill, the rendered reports) they display the same
content as fixed figures and audio players, so nothing waits for a click.
Embedded audio is resampled to :data:`LISTEN_RATE` to keep reports small.
"""
from __future__ import annotations

import os
import re
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython import display as ipd  # called as ipd.display: tests patch it

from . import augment
from .audio import AudioReadError, fix_length, load_audio, resample
from .eda import plot_spectrogram, plot_waveform
from .features import compute

LISTEN_RATE = 11025  # Hz of embedded audio players: 5 s of 16-bit audio is about 110 kB


def listen(y: np.ndarray, *, sr: int, rate: int = LISTEN_RATE):
    """An audio player for a waveform ``y``, shape (samples,), resampled to ``rate``."""
    small = resample(np.asarray(y, dtype=np.float32), orig_sr=sr, target_sr=rate)
    return ipd.Audio(small, rate=rate, normalize=True)


def clip_figure(y: np.ndarray, *, config, title: str = ""):
    """Waveform above log-mel spectrogram of one clip. Returns a matplotlib Figure."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.2), height_ratios=[1, 2],
                                      layout="constrained")
    plot_waveform(y, sr=config.sr, ax=top, title=title)
    top.set_xlabel("")
    plot_spectrogram(compute(y, config), sr=config.sr, hop_length=config.hop_length, ax=bottom)
    # one colour bar beside both panels keeps their time axes aligned
    fig.colorbar(bottom.images[0], ax=[top, bottom], label="dB", fraction=0.04)
    return fig


def _display_clip(y: np.ndarray, *extra, config, title: str) -> None:
    """Display :func:`clip_figure`, a player and ``extra`` objects below them."""
    fig = clip_figure(y, config=config, title=title)
    ipd.display(fig, listen(y, sr=config.sr), *extra)
    plt.close(fig)


def _load(path: str, config) -> np.ndarray:
    return load_audio(path, sr=config.sr, duration=config.duration, pad_mode=config.pad_mode)


def _show_clip(path: str, *, config, title: str) -> None:
    _display_clip(_load(path, config), config=config, title=title)


class ClipExplorer:
    """Pick a category and a clip; hear it and see its waveform and spectrogram.

    Attributes:
        widget: the ipywidgets box to display.
        category, clip: the two dropdowns (set ``.value`` to drive it from code).
    """

    def __init__(self, df: pd.DataFrame, *, config):
        import ipywidgets as w

        self.df = df
        self.config = config
        cats = sorted(df["category"].unique())
        self.category = w.Dropdown(options=cats, value=cats[0], description="category")
        self.clip = w.Dropdown(options=self._clips(cats[0]), description="clip")
        self.output = w.Output()
        self.category.observe(self._on_category, names="value")
        self.clip.observe(self._on_clip, names="value")
        self.widget = w.VBox([w.HBox([self.category, self.clip]), self.output])
        self._on_clip()

    def _clips(self, category: str) -> list[str]:
        return self.df.loc[self.df["category"] == category, "filename"].tolist()

    def _on_category(self, change=None) -> None:
        self.clip.options = self._clips(self.category.value)
        self.clip.value = self.clip.options[0]

    def _on_clip(self, change=None) -> None:
        row = self.df.loc[self.df["filename"] == self.clip.value].iloc[0]
        self.output.clear_output(wait=True)
        with self.output:
            _show_clip(row["path"], config=self.config,
                       title=f"{row['category']}  ({row['filename']}, fold {row['fold']})")


def clip_explorer(df: pd.DataFrame, *, config, interactive: bool, n_static: int = 3, seed: int = 0):
    """The live :class:`ClipExplorer` (displayed and returned) when ``interactive``, else
    ``n_static`` example clips of ``df`` (``path``, ``category``, ``filename``) displayed
    as figures and players, and None."""
    if interactive:
        explorer = ClipExplorer(df, config=config)
        ipd.display(explorer.widget)
        return explorer
    picks = df.groupby("category").sample(1, random_state=seed).head(n_static)
    for row in picks.itertuples():
        _show_clip(row.path, config=config, title=f"{row.category}  ({row.filename})")


def augment_examples(y: np.ndarray, *, sr: int, seed: int = 0, **settings) -> dict[str, np.ndarray]:
    """Each waveform augmentation applied once to ``y``, with the given or default
    ``snr_db``, ``stretch``, ``semitones``, ``gain_db`` and ``shift_s``.

    Returns:
        dict name -> waveform, shape (samples,) (the original under ``"original"``).
    """
    rng = np.random.default_rng(seed)
    s = {"snr_db": 10.0, "stretch": 1.25, "semitones": 3.0, "gain_db": -12.0, "shift_s": 1.0,
         **settings}
    return {
        "original": y,
        f"noise at {s['snr_db']:g} dB SNR": augment.add_noise(y, snr_db=s["snr_db"], rng=rng),
        f"time stretch x{s['stretch']:g}":
            fix_length(augment.time_stretch(y, rate=s["stretch"]), size=len(y)),
        f"pitch shift {s['semitones']:+g} semitones":
            augment.pitch_shift(y, sr=sr, n_steps=s["semitones"]),
        f"gain {s['gain_db']:+g} dB": augment.gain(y, db=s["gain_db"]),
        f"time shift {s['shift_s']:+g} s": augment.time_shift(y, shift=int(s["shift_s"] * sr)),
    }


def spec_augment_example(S: np.ndarray, *, seed: int = 0, freq_width: int = 12,
                         time_width: int = 24):
    """SpecAugment masks on one spectrogram (n_mels, frames) -> the masked copy.

    Training masks normalised features with 0, their mean; on a dB picture the same mask
    is the clip's mean level (0 dB would paint the masks as the loudest sound).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    # (1, 1, mels, frames)
    x = torch.from_numpy(np.ascontiguousarray(S, dtype=np.float32))[None, None]
    out = augment.spec_augment(x, freq_masks=2, freq_width=freq_width, time_masks=2,
                               time_width=time_width, value=float(x.mean()), generator=g)
    return out[0, 0].numpy()


def augmentation_gallery(y: np.ndarray, *, config, seed: int = 0, **settings):
    """Static playground: a Figure (returned) of every augmentation's spectrogram, and
    below it a player for the original and each waveform augmentation."""
    examples = augment_examples(y, sr=config.sr, seed=seed, **settings)
    panels = {name: compute(v, config) for name, v in examples.items()}
    panels["SpecAugment (2 freq + 2 time masks)"] = spec_augment_example(panels["original"],
                                                                          seed=seed)
    cols = (len(panels) + 1) // 2
    fig, axes = plt.subplots(2, cols, figsize=(4 * cols, 6), squeeze=False)
    for ax, (name, spec) in zip(axes.flat, panels.items()):
        plot_spectrogram(spec, sr=config.sr, hop_length=config.hop_length, ax=ax, title=name)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    fig.tight_layout()
    ipd.display(fig)
    plt.close(fig)
    for name, wave in examples.items():
        ipd.display(ipd.HTML(f"<b>{name}</b>"), listen(wave, sr=config.sr))
    return fig


def augmentation_playground(df: pd.DataFrame, *, config, interactive: bool, seed: int = 0):
    """Sliders for each augmentation on one clip (returns the ipywidgets box), or the
    static gallery's Figure when not ``interactive``."""
    row = df.sample(1, random_state=seed).iloc[0]
    y = _load(row["path"], config)
    if not interactive:
        return augmentation_gallery(y, config=config, seed=seed)
    import ipywidgets as w

    slider = w.FloatSlider
    sliders = {
        "snr_db": slider(value=10, min=-5, max=40, step=1, description="SNR dB"),
        "stretch": slider(value=1.2, min=0.7, max=1.5, step=0.05, description="stretch"),
        "semitones": slider(value=2, min=-6, max=6, step=0.5, description="semitones"),
        "gain_db": slider(value=-6, min=-24, max=12, step=1, description="gain dB"),
        "shift_s": slider(value=0.5, min=-2.5, max=2.5, step=0.1, description="shift s"),
    }
    out = w.interactive_output(
        lambda **s: augmentation_gallery(y, config=config, seed=seed, **s), sliders)
    controls = list(sliders.values())
    box = w.VBox([w.HTML(f"<b>{row['category']}</b> ({row['filename']})"),
                  w.HBox(controls[:3]), w.HBox(controls[3:]), out])
    ipd.display(box)
    return box


def setup_notebook(*, figure_format: str = "jpeg", dpi: int = 90) -> None:
    """Figure defaults for the notebooks: one seaborn theme, compact inline images.

    Spectrograms are noise-like pictures that PNG compresses poorly; JPEG keeps each
    report a few hundred kB instead of several MB.
    """
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    mpl.rcParams["figure.dpi"] = dpi
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats(figure_format, **({"pil_kwargs": {"quality": 85}}
                                                 if figure_format == "jpeg" else {}))
    except Exception:  # outside IPython there is no inline backend to configure
        pass


def _uploaded_files(value) -> list[tuple[str, bytes]]:
    """(name, bytes) of a FileUpload value (ipywidgets 8: a tuple of dicts)."""
    items = value.values() if isinstance(value, dict) else value  # ipywidgets 7 used a dict
    return [(item["name"], bytes(item["content"])) for item in items]


def show_prediction(prediction, y: np.ndarray, *, config, top: int = 5) -> None:
    """Spectrogram, player and top classes of one classified recording."""
    name, p = prediction.top(1)[0]
    table = pd.DataFrame(prediction.top(top), columns=["class", "probability"])
    _display_clip(y, table.style.format({"probability": "{:.3f}"}).hide(axis="index"),
                  config=config, title=f"{prediction.source}: {name} ({p:.2f})")


def upload_error(name: str, reason: str, *, temp_path: str) -> str:
    """Why an upload could not be read, naming the person's file (not the temporary copy)."""
    reason = re.sub(r"^\w+Error: ", "", reason.replace(temp_path, name)).strip().rstrip(".")
    return (f"{name} could not be read as audio ({reason}). "
            "Upload a WAV, FLAC or OGG recording.")


def upload_classifier(classifier, *, top: int = 5):
    """A FileUpload: drop a recording, see its spectrogram, hear it, read the prediction
    of ``classifier`` (an :class:`esc50kit.predict.Classifier`). Returns the shown box."""
    import ipywidgets as w

    upload = w.FileUpload(accept="audio/*,.wav,.flac,.ogg", multiple=False,
                          description="audio file")
    out = w.Output()

    def on_upload(change=None) -> None:
        out.clear_output(wait=True)
        with out:
            for name, data in _uploaded_files(upload.value):
                suffix = os.path.splitext(name)[1] or ".wav"
                with tempfile.NamedTemporaryFile(suffix=suffix) as fh:
                    fh.write(data)
                    fh.flush()
                    try:
                        pred = classifier.predict_file(fh.name)
                        y = load_audio(fh.name, sr=classifier.config.sr, duration=None)
                    except AudioReadError as exc:
                        print(upload_error(name, exc.reason, temp_path=fh.name))
                        continue
                pred.source = name
                show_prediction(pred, y, config=classifier.config, top=top)

    upload.observe(on_upload, names="value")
    box = w.VBox([upload, out])
    ipd.display(box)
    return box
