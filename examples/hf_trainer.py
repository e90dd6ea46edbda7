"""Distil a small student with a Hugging Face ``Trainer``, and watch it in the app.

A tiny ``PreTrainedModel`` (randomly initialised, nothing downloaded) on scikit-learn's digits,
trained by ``transformers.Trainer`` on the CPU, well under a minute. ``pip install perco_viz[hf]``.

* **Teacher**: a small MLP (64 → 256 → 64 → 10) trained here first as a classifier; its 64-d
  penultimate layer are its features. It is then frozen.
* **Student**: ``DigitsStudent``, a ``PreTrainedModel`` (64 → 128 → 8, the ``embed`` layer).
  Its ``forward(pixel_values, teacher_features)`` returns the distillation loss,
  :func:`perco_viz.coherence_loss` of its features against the teacher's, so the stock
  ``Trainer`` trains it; it never sees a label.
* **Logging**: one callback, :class:`perco_viz.integrations.hf.PercoVizTrainerCallback`, given a
  probe set (held-out rows as ``{"pixel_values", "labels"}``), the teacher's probe features and
  the student's layer by name (``"embed"``). It logs every ``--every`` steps with the Trainer's
  loss of that step; the ``with callback:`` around ``trainer.train()`` marks the run failed
  should the training raise.

Run it, then open the app on the runs folder it prints::

    python examples/hf_trainer.py --runs runs --epochs 10
    PERCO_VIZ_RUNS=runs make app        # or: PERCO_VIZ_RUNS=runs streamlit run app.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the hub

import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from torch import nn  # noqa: E402
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainingArguments  # noqa: E402
from transformers.modeling_outputs import BaseModelOutput  # noqa: E402

import perco_viz as pv  # noqa: E402
from perco_viz.integrations.hf import PercoVizTrainerCallback  # noqa: E402

PROBE_ROWS = 300  # held-out rows every snapshot is measured on


def load_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits scaled to [0, 1]: ``X_train`` (n, 64), ``y_train`` (n,), ``X_test`` (m, 64), ``y_test`` (m,)."""
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16.0, y, test_size=0.25, random_state=seed, stratify=y)
    return (torch.tensor(X_tr, dtype=torch.float32), torch.tensor(y_tr),
            torch.tensor(X_te, dtype=torch.float32), torch.tensor(y_te))


def train_teacher(X: torch.Tensor, y: torch.Tensor, epochs: int = 10) -> nn.Module:
    """A 64 → 256 → 64 → 10 classifier; returns its frozen 64-d feature body (n, 64) -> (n, 64)."""
    body = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU())
    model = nn.Sequential(body, nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(X)).split(64):
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return body.eval().requires_grad_(False)


class DigitsStudentConfig(PretrainedConfig):
    model_type = "perco_viz_digits_student"

    def __init__(self, in_features: int = 64, hidden: int = 128, dim: int = 8, tau: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.in_features, self.hidden, self.dim, self.tau = in_features, hidden, dim, tau


class DigitsStudent(PreTrainedModel):
    """64 → 128 → 8 (``embed``); with ``teacher_features`` given, ``loss`` is the coherence loss."""

    config_class = DigitsStudentConfig

    def __init__(self, config: DigitsStudentConfig) -> None:
        super().__init__(config)
        self.body = nn.Sequential(nn.Linear(config.in_features, config.hidden), nn.ReLU())
        self.embed = nn.Linear(config.hidden, config.dim)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, teacher_features: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> dict:
        """(n, 64) inputs -> ``last_hidden_state`` (n, 8); ``loss`` when ``teacher_features`` (n, d_t) are given."""
        feats = self.embed(self.body(pixel_values))
        loss = None
        if teacher_features is not None:
            loss = pv.coherence_loss(feats, teacher_features, tau=self.config.tau)
        return BaseModelOutput(last_hidden_state=feats) if loss is None else {"loss": loss, "last_hidden_state": feats}


class Distillation(torch.utils.data.Dataset):
    """Rows ``{"pixel_values": (64,), "teacher_features": (d_t,)}``: the teacher's targets travel with the inputs."""

    def __init__(self, X: torch.Tensor, teacher_features: torch.Tensor) -> None:
        self.X, self.T = X, teacher_features

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.X[i], "teacher_features": self.T[i]}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs", help="the runs folder (the app's PERCO_VIZ_RUNS)")
    parser.add_argument("--epochs", type=int, default=10, help="student epochs")
    parser.add_argument("--every", type=int, default=10, help="log a snapshot every this many steps")
    parser.add_argument("--name", default="hf-trainer-digits", help="the run's name in the app")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    start = time.perf_counter()

    X, y, X_test, y_test = load_data(args.seed)
    teacher = train_teacher(X, y)
    with torch.no_grad():
        t_train, t_probe = teacher(X), teacher(X_test[:PROBE_ROWS])
    student = DigitsStudent(DigitsStudentConfig())
    # --- perco_viz: one callback with the probe set, the teacher's probe features and the layer's name
    callback = PercoVizTrainerCallback(
        {"pixel_values": X_test[:PROBE_ROWS], "labels": y_test[:PROBE_ROWS]}, teacher_features=t_probe,
        student_layer="embed", every_n_steps=args.every, root=args.runs, name=args.name,
        class_names=[str(d) for d in range(10)],
        config={"teacher": "MLP 64-256-64-10", "student": "DigitsStudent 64-128-8", "loss": "coherence_loss",
                "lr": 3e-3, "batch_size": 128, "seed": args.seed})
    with tempfile.TemporaryDirectory() as out:  # the Trainer's own output (no checkpoints are saved)
        training = TrainingArguments(
            output_dir=out, num_train_epochs=args.epochs, per_device_train_batch_size=128, learning_rate=3e-3,
            lr_scheduler_type="cosine", logging_steps=args.every, save_strategy="no", report_to=[],
            use_cpu=True, disable_tqdm=True, seed=args.seed, remove_unused_columns=False)
        trainer = Trainer(model=student, args=training, train_dataset=Distillation(X, t_train),
                          callbacks=[callback])
        with callback:  # a training that raises leaves a failed run with its message
            trainer.train()

    runs = Path(args.runs).resolve()
    print(f"done in {time.perf_counter() - start:.1f} s; the run is {callback.path.resolve()}")
    print(f"open it in the app: PERCO_VIZ_RUNS={runs} make app   (or: PERCO_VIZ_RUNS={runs} streamlit run app.py)")
    return callback.path


if __name__ == "__main__":
    main()
