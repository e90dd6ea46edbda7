"""Distil a small student with your own PyTorch loop, and watch it in the app.

No perco_viz engine: a plain training loop on scikit-learn's digits (shipped with the package,
no download), CPU, about ten seconds.

* **Teacher**: a small MLP (64 → 256 → 64 → 10) trained here first, for a few seconds, as a
  classifier on the train split; its features are its 64-d penultimate layer. It is then frozen.
* **Student**: a smaller MLP (64 → 128 → 8) that never sees a label: it learns to rank the
  inputs as the teacher does, with :func:`perco_viz.coherence_loss` on each batch.
* **Logging**: the three lines of perco_viz — ``open_run`` with the teacher's features of a
  probe set (held-out test rows), and ``run.log`` of the student's features of the same rows
  once an epoch, with the loss and the learning rate. PC, the c_i distribution and k-NN accuracy
  are measured off the training thread.

Run it, then open the app on the runs folder it prints::

    python examples/plain_pytorch.py --runs runs --epochs 15
    PERCO_VIZ_RUNS=runs make app        # or: PERCO_VIZ_RUNS=runs streamlit run app.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import perco_viz as pv

PROBE_ROWS = 300  # held-out test rows the run measures PC, c_i and k-NN accuracy on


def load_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits scaled to [0, 1]: ``X_train`` (n, 64), ``y_train`` (n,), ``X_test`` (m, 64), ``y_test`` (m,)."""
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16.0, y, test_size=0.25, random_state=seed, stratify=y)
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return as_x(X_tr), torch.tensor(y_tr), as_x(X_te), torch.tensor(y_te)


class Teacher(nn.Module):
    """64 → 256 → 64 → 10; ``features`` is the 64-d penultimate layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (n, 64) -> (n, 64)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, 64) -> (n, 10) logits
        return self.head(self.body(x))


def train_teacher(X: torch.Tensor, y: torch.Tensor, X_test: torch.Tensor, y_test: torch.Tensor,
                  epochs: int = 12) -> tuple[Teacher, float]:
    """A classifier trained with cross-entropy; returns it (frozen) and its test accuracy."""
    teacher = Teacher()
    opt = torch.optim.Adam(teacher.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(X)).split(64):
            loss = nn.functional.cross_entropy(teacher(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    teacher.eval().requires_grad_(False)
    with torch.no_grad():
        acc = (teacher(X_test).argmax(1) == y_test).float().mean().item()
    return teacher, acc


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs", help="the runs folder (the app's PERCO_VIZ_RUNS)")
    parser.add_argument("--epochs", type=int, default=15, help="student epochs")
    parser.add_argument("--name", default="plain-pytorch-digits", help="the run's name in the app")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    start = time.perf_counter()

    X, y, X_test, y_test = load_data(args.seed)
    teacher, teacher_acc = train_teacher(X, y, X_test, y_test)
    print(f"teacher: test accuracy {teacher_acc:.1%} ({time.perf_counter() - start:.1f} s)")
    with torch.no_grad():
        t_train = teacher.features(X)  # (n, 64): the targets of the student's rankings
        probe = torch.arange(PROBE_ROWS)  # the first test rows (the split is shuffled and stratified)
        t_probe = teacher.features(X_test[probe])  # (PROBE_ROWS, 64)

    student = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 8))
    lr = 3e-3
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    config = {"teacher": "MLP 64-256-64-10, cross-entropy", "teacher_test_acc": round(teacher_acc, 4),
              "student": "MLP 64-128-8", "loss": "coherence_loss (tau 0.1)", "lr": lr, "batch_size": 256,
              "seed": args.seed}
    step = 0
    # --- perco_viz, line 1: a run directory the app lists, with the teacher's probe features
    with pv.open_run(args.runs, name=args.name, teacher_features=t_probe, labels=y_test[probe],
                     class_names=[str(d) for d in range(10)], config=config, epochs=args.epochs) as run:
        with torch.no_grad():  # the untrained student: epoch 0
            run.log(student(X_test[probe]), epoch=0, step=0, lr=lr)
        for epoch in range(args.epochs):
            student.train()
            for idx in torch.randperm(len(X)).split(256):
                loss = pv.coherence_loss(student(X[idx]), t_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
            sched.step()
            student.eval()
            with torch.no_grad():
                # --- perco_viz, line 2: the student's features of the probe rows, and your numbers
                run.log(student(X_test[probe]), epoch=epoch + 1, step=step, train_loss=loss.item(),
                        lr=sched.get_last_lr()[0])
        # --- perco_viz, line 3: leaving the `with` block marks the run finished (failed on an exception)
    last = run.run_dir.metrics()[-1]
    print(f"student: {args.epochs} epochs in {time.perf_counter() - start:.1f} s; "
          f"PC {last['pc']:.3f}, k-NN accuracy {last['knn_acc']:.1%} on {PROBE_ROWS} held-out probe rows")
    print(f"run: {run.path}")
    print(f"open it: PERCO_VIZ_RUNS={Path(args.runs).resolve()} make app   "
          f"(or: PERCO_VIZ_RUNS={Path(args.runs).resolve()} streamlit run app.py)")
    return run.path


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
