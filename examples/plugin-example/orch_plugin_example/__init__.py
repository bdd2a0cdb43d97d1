"""orch_plugin_example: a worked example of an installable orchestration plugin."""

__version__ = "0.1.0"
