"""widgets: the JupyterLab dashboard for dyntie (ipywidgets + plotly).

Depends on ``dyntie_core``'s public API and events only; the core never imports it.
"""
