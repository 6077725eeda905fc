"""Pictures: sample grids of what a policy does, and plots of a study.

Sample grids are PNG bytes built with Pillow; study plots are matplotlib figures (Agg).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from policysearch.policy.definition import Policy
from policysearch.study.record import read_trial


def augment_batch(policy: Policy, images: np.ndarray, seed: int, *, crop_padding: int = 0,
                  flip: bool = False, draws: int = 1) -> np.ndarray:
    """``draws`` independent augmentations of ``images``: (draws, N, H, W, C) uint8.

    Draw ``d`` stands for epoch ``d``: each epoch draws new random parameters for every image.
    """
    import keras

    from policysearch.policy.layer import PolicyAugmentation

    layer = PolicyAugmentation(policy, crop_padding=crop_padding, flip=flip, seed=seed)
    out = [keras.ops.convert_to_numpy(layer(images, training=True)) for _ in range(draws)]
    return np.stack(out).astype("uint8")


def grid_png(rows: Sequence[Sequence[np.ndarray]], *, scale: int = 3, gap: int = 2,
             labels: Sequence[str] | None = None, header: Sequence[str] | None = None) -> bytes:
    """Tile ``rows`` of equally sized images into one PNG (optional row labels, column header)."""
    from PIL import Image, ImageDraw

    h, w = rows[0][0].shape[:2]
    cell_h, cell_w = h * scale, w * scale
    left = 90 if labels else 0
    top = 16 if header else 0
    ncols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (left + ncols * (cell_w + gap) + gap,
                               top + len(rows) * (cell_h + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, text in enumerate(header or []):
        draw.text((left + gap + j * (cell_w + gap), 2), text, fill=(0, 0, 0))
    for i, row in enumerate(rows):
        y = top + gap + i * (cell_h + gap)
        if labels:
            draw.text((4, y + cell_h // 2 - 6), labels[i][:14], fill=(0, 0, 0))
        for j, image in enumerate(row):
            tile = Image.fromarray(np.asarray(image, dtype="uint8").squeeze()).convert("RGB")
            tile = tile.resize((cell_w, cell_h), Image.NEAREST)
            canvas.paste(tile, (left + gap + j * (cell_w + gap), y))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def sample_grid(policy: Policy, images: np.ndarray, seed: int = 0, *, crop_padding: int = 0,
                flip: bool = False, copies: int = 3) -> bytes:
    """First row: the originals; then ``copies`` rows of independent augmentations."""
    augmented = augment_batch(policy, images, seed, crop_padding=crop_padding, flip=flip,
                              draws=copies)
    rows = [list(images)] + [list(draw) for draw in augmented]
    return grid_png(rows, labels=["original"] + [f"draw {i + 1}" for i in range(copies)])


def epochs_grid(policy: Policy, images: np.ndarray, epochs: int = 8, seed: int = 0, *,
                crop_padding: int = 0, flip: bool = False) -> bytes:
    """One row per image: the original, then what the model sees of it in each epoch."""
    augmented = augment_batch(policy, images, seed, crop_padding=crop_padding, flip=flip,
                              draws=epochs)
    rows = [[images[i]] + [augmented[e, i] for e in range(epochs)] for i in range(len(images))]
    header = ["original"] + [f"epoch {e + 1}" for e in range(epochs)]
    return grid_png(rows, header=header)


# ----------------------------------------------------------------------------------------------
# Study plots


def new_figure(width: float = 7.0, height: float = 4.0) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def history_figure(trials: Sequence[Any]) -> Any:
    """Validation accuracy of every finished trial, the best so far, and the baselines."""
    fig, ax = new_figure()
    from policysearch.study.record import queued_baseline

    search = [(t.number, t.value) for t in trials
              if t.value is not None and not queued_baseline(t)]
    if search:
        xs, ys = zip(*search)
        ax.scatter(xs, ys, s=14, color="tab:blue", label="searched trial")
        ax.plot(xs, np.maximum.accumulate(ys), color="tab:blue", alpha=0.6,
                label="best searched so far")
    colors = ["tab:red", "tab:orange", "tab:green", "tab:purple"]
    baselines = [t for t in trials if queued_baseline(t) and t.value is not None]
    for i, t in enumerate(baselines):
        ax.axhline(t.value, color=colors[i % len(colors)], linestyle="--", linewidth=1,
                   label=f"baseline {queued_baseline(t)}")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Optimization history")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def importance_figure(importances: dict[str, float]) -> Any:
    fig, ax = new_figure(7.0, max(2.5, 0.25 * len(importances) + 1))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title("Parameter importances")
    fig.tight_layout()
    return fig


def op_effect_figure(effects: dict[str, tuple[float, float, int, int]]) -> Any:
    """Mean validation accuracy of trials with each op in vs out of the policy."""
    fig, ax = new_figure(8.0, 4.0)
    names = list(effects)
    x = np.arange(len(names))
    ins = [effects[n][0] for n in names]
    outs = [effects[n][1] for n in names]
    ax.bar(x - 0.2, ins, width=0.4, label="op in policy", color="tab:green")
    ax.bar(x + 0.2, outs, width=0.4, label="op left out", color="tab:gray")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    low = min(v for v in ins + outs if np.isfinite(v)) if names else 0.0
    ax.set_ylim(bottom=max(0.0, low - 0.02))
    ax.set_ylabel("mean validation accuracy")
    ax.set_title("Accuracy by op in / out of the policy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _ops_in(trial: Any) -> set[str]:
    """The ops the trial's policy held (its record; else its op switches): with op groups an
    op whose switch is on may be out, its group being off."""
    record = read_trial(trial)
    if record is not None and isinstance(record.policy.get("ops"), list):
        return set(record.policy["ops"])
    return {k[3:] for k, v in trial.params.items() if k.startswith("op_") and v is True}


def op_effects(trials: Sequence[Any]) -> dict[str, tuple[float, float, int, int]]:
    """Per op of a subset space: (mean value in, mean value out, count in, count out)."""
    effects = {}
    done = [t for t in trials if t.value is not None and t.params]
    names = sorted({k[3:] for t in done for k in t.params if k.startswith("op_")})
    held = {t.number: _ops_in(t) for t in done}
    for name in names:
        ins = [t.value for t in done if name in held[t.number]]
        outs = [t.value for t in done if name not in held[t.number]]
        effects[name] = (float(np.mean(ins)) if ins else float("nan"),
                         float(np.mean(outs)) if outs else float("nan"), len(ins), len(outs))
    return effects


def figure_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def study_figures(study: Any) -> dict[str, Any]:
    """The study's plots by file name: history, parameter importance, each op in or out."""
    trials = study.get_trials(deepcopy=False)
    figures = {"optimization_history.png": history_figure(trials)}
    searched = [t for t in trials if t.state.name == "COMPLETE" and t.params]
    if len(searched) >= 3:
        import optuna

        try:
            importances = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError):  # too few or too uniform trials
            importances = {}
        if importances:
            figures["param_importances.png"] = importance_figure(importances)
    effects = op_effects(trials)
    if effects:
        figures["op_in_out.png"] = op_effect_figure(effects)
    return figures
