"""Importing this module registers every built-in selector (see curation.selection.base.SELECTORS)."""

from curation.selection import (
    coresets,  # noqa: F401
    craig,  # noqa: F401
    infobatch,  # noqa: F401
    pairwise,  # noqa: F401
    sampling,  # noqa: F401
    selective_backprop,  # noqa: F401
    submodular,  # noqa: F401
)
