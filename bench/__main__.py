"""``python -m bench`` is the ``wsbench`` command."""

from __future__ import annotations

from bench.cli import main

raise SystemExit(main())
