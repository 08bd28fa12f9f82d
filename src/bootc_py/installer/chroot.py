"""Run programs inside a new deployment, as curtin's ChrootableTarget does.

The deployment's /usr is hard links into the ostree repository: it is bind-mounted read-only so
a script cannot corrupt the repository. /etc is the deployment's own (writable); /var is the
stateroot's shared /var bind-mounted over the deployment's empty one, as at boot; /dev, /proc
and /sys come from the host. Everything is unmounted on exit, in reverse order.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from bootc_py.disk.mount import Mount
from bootc_py.run import MOUNT_TIMEOUT, run

log = logging.getLogger(__name__)


class ChrootableTarget:
    def __init__(self, root: Path, var: Path) -> None:
        self.root = root
        self.var = var
        self._stack = ExitStack()

    def __enter__(self) -> ChrootableTarget:
        try:
            usr = self.root / "usr"
            self._stack.enter_context(Mount(usr, usr, options=["bind"], mkdir=False))
            run(["mount", "-o", "remount,bind,ro", usr], timeout=MOUNT_TIMEOUT)
            self._stack.enter_context(Mount(self.var, self.root / "var", options=["bind"]))
            for fs, where in (("proc", "proc"), ("sysfs", "sys")):
                self._stack.enter_context(Mount(fs, self.root / where, fstype=fs))
            self._stack.enter_context(Mount("/dev", self.root / "dev", options=["bind"]))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    def argv(self, *args: str) -> list[str]:
        """`args` as run inside the target."""
        return ["chroot", str(self.root), *args]
