"""Named kill points for crash testing: inert unless CURATION_KILL_AT names the point.

``kill_point("register:after-publish")`` ends the process with SIGKILL when
``CURATION_KILL_AT=register:after-publish``, so tests can prove that a crash at that exact
place leaves the catalog, the store and DVC consistent.
"""

import os
import signal


def kill_point(name: str) -> None:
    if os.environ.get("CURATION_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
