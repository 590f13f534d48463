"""The package version, in one place: ``pyproject.toml`` reads it (setuptools' dynamic ``attr``) and so do
``dyntie_core.__version__`` and every run's recorded environment, so a run from an uninstalled tree names it too."""

__version__ = "0.2.0"
