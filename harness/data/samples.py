"""Image grids of what a method trains on (a generator's output, substitute data),
saved at each report so a person can see what, say, DAFL's generator learned."""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image


@torch.no_grad()
def save_sample_grid(images: torch.Tensor, teacher: torch.nn.Module | None, mean, std, path: Path,
                     count: int = 64) -> Path:
    """Write up to ``count`` images as a PNG grid, ordered by the teacher's predicted class
    (so each class's images sit together), in the data set's pixel range."""
    images = images[:count].detach().float()
    if teacher is not None:
        order = teacher(images).argmax(1).argsort(stable=True)
        images = images[order]
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    pixels = (images * std_t + mean_t).clamp(0, 1).cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(pixels, path, nrow=8, padding=1)
    return path
