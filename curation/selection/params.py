"""Selector parameters written as text: ``key=value`` pairs, each value typed as a YAML scalar.

One parser for every place a user writes them: ``curation select -p key=value`` and the methods of
``curation compare -m name:key=value,...`` (and the compare flow).
"""

from __future__ import annotations

from collections.abc import Iterable

import yaml

from curation.errors import CurationError


def parse_pairs(pairs: Iterable[str], where: str, example: str) -> dict:
    """``['optimizer=lazy', 'ratio=0.3']`` -> ``{'optimizer': 'lazy', 'ratio': 0.3}``.

    ``where`` names the pairs' source in an error (``--param``), ``example`` shows the right form.
    """
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CurationError(f"{where}: {pair!r} is not key=value", f"write e.g. {example}")
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise CurationError(
                f"{where}: the value of {pair!r} is not valid YAML ({problem})", f"quote it or write e.g. {example}"
            ) from None
    return params
