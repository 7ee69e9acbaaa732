"""`python -m curation` is the `curation` command."""

from curation.cli import app

if __name__ == "__main__":  # not when a spawned process (a training rank) imports it as __mp_main__
    app()
