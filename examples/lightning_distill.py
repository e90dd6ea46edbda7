"""Distil a small student with a Lightning module, and watch it in the app.

A ``LightningModule`` on scikit-learn's digits (shipped with the package, no download), CPU,
well under a minute. ``pip install perco_viz[lightning]``.

* **Teacher**: a small MLP (64 → 256 → 64 → 10) trained here first, for a few seconds, as a
  classifier; its features are its 64-d penultimate layer (``body``). It is then frozen and
  held by the module.
* **Student**: an MLP (64 → 128 → 8) whose ``embed`` layer is trained with
  :func:`perco_viz.coherence_loss` to rank the inputs as the teacher does; it never sees a label.
* **Logging**: one callback, :class:`perco_viz.integrations.lightning.PercoVizCallback`, given
  a probe set (held-out rows, a ``DataLoader``), the frozen teacher and the student's layer by
  name (``"student.embed"``). It logs once an epoch with the loss the module logs and the
  learning rate; PC, the c_i distribution and k-NN accuracy are measured off the training thread.

Run it, then open the app on the runs folder it prints::

    python examples/lightning_distill.py --runs runs --epochs 10
    PERCO_VIZ_RUNS=runs make app        # or: PERCO_VIZ_RUNS=runs streamlit run app.py
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import perco_viz as pv
from perco_viz.integrations.lightning import PercoVizCallback

PROBE_ROWS = 300  # held-out rows every snapshot is measured on


def load_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits scaled to [0, 1]: ``X_train`` (n, 64), ``y_train`` (n,), ``X_test`` (m, 64), ``y_test`` (m,)."""
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16.0, y, test_size=0.25, random_state=seed, stratify=y)
    return (torch.tensor(X_tr, dtype=torch.float32), torch.tensor(y_tr),
            torch.tensor(X_te, dtype=torch.float32), torch.tensor(y_te))


class Teacher(nn.Module):
    """64 → 256 → 64 → 10; ``body`` gives the 64-d features."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, 64) -> (n, 10) logits
        return self.head(self.body(x))


def train_teacher(X: torch.Tensor, y: torch.Tensor, epochs: int = 10) -> Teacher:
    """A classifier trained with cross-entropy, returned frozen (eval mode, no gradients)."""
    teacher = Teacher()
    opt = torch.optim.Adam(teacher.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(X)).split(64):
            loss = nn.functional.cross_entropy(teacher(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return teacher.eval().requires_grad_(False)


class Student(nn.Module):
    """64 → 128 → 8; ``embed`` outputs the (n, 8) features."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 128), nn.ReLU())
        self.embed = nn.Linear(128, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, 64) -> (n, 8)
        return self.embed(self.body(x))


class CoherenceDistill(pl.LightningModule):
    """The student learns the teacher's rankings: ``coherence_loss(student(x), teacher.body(x))``."""

    def __init__(self, teacher: Teacher, lr: float = 3e-3, epochs: int = 10) -> None:
        super().__init__()
        self.teacher, self.student = teacher, Student()
        self.lr, self.epochs = lr, epochs

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, 64) -> (n, 8): what the callback calls
        return self.student(x)

    def on_train_epoch_start(self) -> None:
        self.teacher.eval()  # the frozen teacher stays in eval mode, whatever set the module's mode

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, _ = batch  # the labels are never used
        with torch.no_grad():
            target = self.teacher.body(x)
        loss = pv.coherence_loss(self.student(x), target)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.student.parameters(), lr=self.lr)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs", help="the runs folder (the app's PERCO_VIZ_RUNS)")
    parser.add_argument("--epochs", type=int, default=10, help="student epochs")
    parser.add_argument("--name", default="lightning-digits", help="the run's name in the app")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pl.seed_everything(args.seed, verbose=False)
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode")  # the frozen teacher, on purpose
    start = time.perf_counter()

    X, y, X_test, y_test = load_data(args.seed)
    teacher = train_teacher(X, y)
    module = CoherenceDistill(teacher, epochs=args.epochs)
    probe = DataLoader(TensorDataset(X_test[:PROBE_ROWS], y_test[:PROBE_ROWS]), batch_size=100)
    # --- perco_viz: one callback with the probe set, the frozen teacher and the student's layer
    callback = PercoVizCallback(
        probe, teacher=teacher.body, student_layer="student.embed", every_n_epochs=1,
        root=args.runs, name=args.name, class_names=[str(d) for d in range(10)],
        config={"teacher": "MLP 64-256-64-10", "student": "MLP 64-128-8", "loss": "coherence_loss",
                "lr": module.lr, "batch_size": 128, "seed": args.seed})
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, DataLoader(TensorDataset(X, y), batch_size=128, shuffle=True))

    runs = Path(args.runs).resolve()
    print(f"done in {time.perf_counter() - start:.1f} s; the run is {callback.path.resolve()}")
    print(f"open it in the app: PERCO_VIZ_RUNS={runs} make app   (or: PERCO_VIZ_RUNS={runs} streamlit run app.py)")
    return callback.path


if __name__ == "__main__":
    main()
