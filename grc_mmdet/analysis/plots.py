"""Shared plotting for the analysis tools: curves against the training iteration."""
from typing import Sequence


def iteration_figure(num_axes: int, width: float = 5.0, height: float = 3.6):
    """A row of ``num_axes`` axes on a non-interactive (Agg) figure."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, num_axes, figsize=(width * num_axes, height), squeeze=False)
    return fig, list(axes[0])


def save_iteration_figure(fig, axes: Sequence, ylabels: Sequence[str], path: str) -> None:
    """Label each axis (iteration against its y label), add grid and legend, write a PNG."""
    import matplotlib.pyplot as plt
    for ax, ylabel in zip(axes, ylabels):
        ax.set_xlabel('iteration')
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
