"""Pictures of a run, drawn with matplotlib's object API (no display, no pyplot state)."""

from __future__ import annotations

from training import run_dir


def plot_history(path: str, history: list[dict[str, float]], best_epoch: int) -> None:
    """history.png: train loss and validation logloss (left), validation AUC and
    GAUC (middle) per epoch, the best epoch (the weights kept) marked; with
    attention units, their health (right: largest weight over the row's mean,
    1 when the attention pools, training/health.py)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    groups = [key.split("/", 1)[1] for key in (history[-1] if history else {}) if key.startswith("attention_ratio/")]
    figure = Figure(figsize=(13.5 if groups else 9, 3.6), layout="constrained")
    panels = figure.subplots(1, 3 if groups else 2)
    losses, aucs = panels[:2]
    losses.plot(epochs, [row["train_loss"] for row in history], "o-", label="train loss")
    if history and "valid_logloss" in history[0]:
        losses.plot(epochs, [row["valid_logloss"] for row in history], "s-", label="valid logloss")
        aucs.plot(epochs, [row["valid_auc"] for row in history], "o-", color="C2", label="valid AUC")
        if "valid_gauc" in history[-1]:  # a per-user ranking: what a recommender serves
            aucs.plot(epochs, [row.get("valid_gauc", float("nan")) for row in history], "s-", color="C3",
                      label="valid GAUC")
    else:
        aucs.text(0.5, 0.5, "no validation split", ha="center", va="center", transform=aucs.transAxes)
    named = [(losses, "loss"), (aucs, "AUC")]
    if groups:
        health = panels[2]
        for i, group in enumerate(groups):
            health.plot(epochs, [row.get(f"attention_ratio/{group}", float("nan")) for row in history], "o-",
                        color=f"C{4 + i}", label=f"attention {group}")
        health.axhline(1.0, color="black", linewidth=1, label="uniform (pooling)")
        named.append((health, "largest weight / row mean"))
    for axes, name in named:
        axes.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle("training history")
    run_dir.write_file(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
