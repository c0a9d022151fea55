"""``python -m intake_cpg`` runs the command line."""

from .cli import main

raise SystemExit(main())
