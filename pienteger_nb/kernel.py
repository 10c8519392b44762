"""What the IPython kernel running us says, read without importing IPython (cheap, safe anywhere)."""

from __future__ import annotations

import os
import sys


def in_kernel() -> bool:
    """True inside a Jupyter kernel (IPython with a kernel), where widgets can render."""
    ipython_mod = sys.modules.get("IPython")
    if ipython_mod is None:
        return False
    get_ipython = getattr(ipython_mod, "get_ipython", None)
    ip = get_ipython() if get_ipython is not None else None
    if ip is None:
        return False
    config = getattr(ip, "config", None)
    if isinstance(config, dict) and "IPKernelApp" in config:
        return True
    has_trait = getattr(ip, "has_trait", None)
    return bool(has_trait and has_trait("kernel"))


def running_cell() -> int | None:
    """The number (``In [n]``) of the IPython or notebook cell running now; None outside a cell."""
    ipython_mod = sys.modules.get("IPython")
    get_ipython = getattr(ipython_mod, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    # The displayhook holds the running cell's result from its start to its end, and only then.
    result = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    count = getattr(result, "execution_count", None)
    return count if isinstance(count, int) else None


def notebook_path() -> str:
    """The running notebook's path: ``__session__`` in the user namespace (set by Jupyter's
    kernel), else ``JPY_SESSION_NAME``; "" when neither says."""
    ipython_mod = sys.modules.get("IPython")
    get_ipython = getattr(ipython_mod, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    namespace = getattr(shell, "user_ns", None)
    session = namespace.get("__session__") if isinstance(namespace, dict) else None
    if isinstance(session, str) and session:
        return session
    return os.environ.get("JPY_SESSION_NAME", "")


__all__ = ["in_kernel", "notebook_path", "running_cell"]
