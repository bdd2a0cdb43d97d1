"""Starting runs without a person: cron schedules, event triggers, launches and the daemon.

Imports views and the layers below; never operations, web or cli.
"""
