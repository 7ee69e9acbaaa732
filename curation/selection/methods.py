"""Importing this module registers every built-in selector (see curation.selection.base.SELECTORS)."""

from curation.selection import sampling  # noqa: F401
from curation.selection import coresets  # noqa: F401
from curation.selection import submodular  # noqa: F401
from curation.selection import craig  # noqa: F401
from curation.selection import pairwise  # noqa: F401
from curation.selection import selective_backprop  # noqa: F401
from curation.selection import infobatch  # noqa: F401
