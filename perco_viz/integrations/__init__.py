"""Stream a training you already have into perco_viz, from the frameworks people use.

Each framework has one small module, imported only when asked for (this package imports
nothing heavy, so ``import perco_viz.integrations`` works without the extras):

* :mod:`perco_viz.integrations.lightning` — ``PercoVizCallback``, a Lightning ``Callback``
  (``pip install perco_viz[lightning]``);
* :mod:`perco_viz.integrations.hf` — ``PercoVizTrainerCallback``, a Hugging Face
  ``TrainerCallback`` (``pip install perco_viz[hf]``);
* :mod:`perco_viz.integrations.probe` — what both share and what a plain loop can use too:
  the probe set (from a ``DataLoader`` or tensors), the teacher's probe features computed
  once, the student's features read at a module chosen by name with a temporary forward
  hook, and :class:`~perco_viz.integrations.probe.ProbeRecorder`, which opens the run
  (:func:`perco_viz.open_run`), logs one snapshot and closes it.

Every snapshot is a run in the engine's format: the app lists it from ``PERCO_VIZ_RUNS`` and
every page opens it while it trains.
"""
