"""The d2l-style reference loop the harness is compared against, written as the d2l seeds write it.

d2l's `load_data_fashion_mnist(batch_size, resize=224)`: a torchvision dataset that hands out PIL images,
`transforms.Compose([Resize(224), ToTensor()])` applied image by image in a DataLoader with 4 workers, shuffled.
d2l's `train_ch6`: fp32, contiguous (NCHW) model, `net(X)`, cross-entropy, plain SGD step, and the running metrics
added with `float(...)` after every step (one host sync per step).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from nin.models import create_model
from nin.variant import Variant

D2L_WORKERS = 4  # d2l.get_dataloader_workers()


def default_workers() -> int:
    """d2l's 4 workers, or fewer where the machine has fewer cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(D2L_WORKERS, cores)


class PILImages(Dataset):
    """uint8 (N, 1, H, W) images handed out as PIL images, as torchvision's FashionMNIST does."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index, 0].numpy(), mode="L")
        return self.transform(image), int(self.labels[index])


def d2l_loader(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, image_size: int, workers: int
) -> DataLoader:
    transform = transforms.Compose([transforms.Resize(image_size), transforms.ToTensor()])
    return DataLoader(
        PILImages(images, labels, transform), batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True
    )


class ReferenceLoop:
    """d2l's train_ch6 inner loop on one device."""

    def __init__(self, variant: Variant, device: torch.device, loader: DataLoader) -> None:
        self.device, self.loader = device, loader
        torch.manual_seed(variant.seed)
        # The same network the harness trains, built the same way, but fp32 and contiguous as d2l has it.
        self.net = create_model(variant).to(device)
        self.net.train()
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=variant.lr)
        self.loss = nn.CrossEntropyLoss()
        self.metric = [0.0, 0.0, 0]  # d2l.Accumulator(3): summed loss, correct, images

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """A fresh pass over the loader (d2l starts one per epoch; the workers start with it)."""
        return iter(self.loader)

    def step(self, X: torch.Tensor, y: torch.Tensor) -> None:
        # The harness turns cuDNN's autotuner on process-wide; d2l leaves it at torch's default (off).
        autotune, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
        try:
            self.optimizer.zero_grad()
            X, y = X.to(self.device), y.to(self.device)
            y_hat = self.net(X)
            loss = self.loss(y_hat, y)
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                self.metric[0] += float(loss * X.shape[0])
                self.metric[1] += float((y_hat.argmax(axis=1).type(y.dtype) == y).sum())
                self.metric[2] += X.shape[0]
        finally:
            torch.backends.cudnn.benchmark = autotune
