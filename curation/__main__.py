"""`python -m curation` is the `curation` command."""

from curation.cli import app

app()
