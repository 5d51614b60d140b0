"""Pictures of a run, drawn with matplotlib's object API (no display, no pyplot state)."""

from __future__ import annotations

from training import run_dir


def plot_history(path: str, history: list[dict[str, float]], best_epoch: int) -> None:
    """history.png: train loss and validation logloss (left), validation AUC and
    GAUC (right) per epoch, the best epoch (the weights kept) marked."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    losses, aucs = figure.subplots(1, 2)
    losses.plot(epochs, [row["train_loss"] for row in history], "o-", label="train loss")
    if history and "valid_logloss" in history[0]:
        losses.plot(epochs, [row["valid_logloss"] for row in history], "s-", label="valid logloss")
        aucs.plot(epochs, [row["valid_auc"] for row in history], "o-", color="C2", label="valid AUC")
        if "valid_gauc" in history[-1]:  # a per-user ranking: what a recommender serves
            aucs.plot(epochs, [row.get("valid_gauc", float("nan")) for row in history], "s-", color="C3",
                      label="valid GAUC")
    else:
        aucs.text(0.5, 0.5, "no validation split", ha="center", va="center", transform=aucs.transAxes)
    for axes, name in ((losses, "loss"), (aucs, "AUC")):
        axes.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle("training history")
    run_dir.write_file(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
