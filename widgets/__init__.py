"""widgets: the JupyterLab dashboard for dyntie (ipywidgets + plotly).

Depends on ``dyntie_core``'s public API and events only; the core never imports it.
"""

from .dashboard import Dashboard, has_live_frontend
from .figures import tie_map_figure, tie_matrix
from .runner import BackgroundRun

__all__ = ["BackgroundRun", "Dashboard", "has_live_frontend", "tie_map_figure", "tie_matrix"]
