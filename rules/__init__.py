"""The default rule set shipped with orchestration."""
