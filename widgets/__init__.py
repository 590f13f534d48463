"""widgets: the JupyterLab dashboard for dyntie (ipywidgets + plotly).

Depends on ``dyntie_core``'s public API and events only; the core never imports it.
The figures themselves are the core's (``dyntie_core.plots``), shared with the CLI.
"""

from .dashboard import Dashboard, has_live_frontend
from .runner import BackgroundRun

__all__ = ["BackgroundRun", "Dashboard", "has_live_frontend"]
