"""``python -m perco_viz`` is the ``perco-viz`` command."""

from perco_viz.cli import main

raise SystemExit(main())
