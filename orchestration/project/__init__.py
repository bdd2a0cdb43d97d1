"""The user's project as the engine sees it: environment, work tree, checkpoints, worktrees.

Imports core, rules, pluginhost, agents and orchestration.extension; never the engine.
"""
