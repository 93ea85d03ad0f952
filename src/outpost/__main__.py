"""``python -m outpost`` runs the CLI."""

from outpost.cli import main

main()
