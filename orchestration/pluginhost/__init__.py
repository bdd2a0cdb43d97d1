"""Loading plugins and calling their hooks safely; notifications sent in the background.

Imports core, rules and orchestration.extension.
"""
