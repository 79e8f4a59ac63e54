"""Vanilla-backprop saliency maps (Simonyan et al. 2014), the paper's Figure 6: the gradient of the top class
score with respect to the input pixels, its absolute value maxed over colour channels."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from landmark.files import atomic_path  # noqa: E402


def saliency_maps(model, images: torch.Tensor) -> np.ndarray:
    """(N, H, W) saliency of each image for the class the model ranks first."""
    model.eval()
    images = images.clone().requires_grad_(True)
    logits = model(images)
    top_scores = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()
    (gradient,) = torch.autograd.grad(top_scores, images)
    return gradient.abs().amax(dim=1).numpy()


def plot_saliency_grid(pictures, maps_by_variant: dict, out_png) -> None:
    """One row per image: the image, then each variant's saliency map (brighter = more influential)."""
    columns = 1 + len(maps_by_variant)
    figure, axes = plt.subplots(len(pictures), columns, figsize=(1.9 * columns, 1.9 * len(pictures)), squeeze=False)
    for row, picture in enumerate(pictures):
        axes[row, 0].imshow(picture)
        for column, (name, maps) in enumerate(maps_by_variant.items(), start=1):
            axes[row, column].imshow(maps[row], cmap="inferno")
            if row == 0:
                axes[row, column].set_title(name, fontsize=7)
        if row == 0:
            axes[row, 0].set_title("dev image", fontsize=7)
    for axis in axes.flat:
        axis.set_axis_off()
    figure.tight_layout()
    with atomic_path(out_png) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
