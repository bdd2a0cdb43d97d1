"""The engine: the loop conducting its parts, scheduler, breakpoints, decisions, quality, actions.

Imports every layer below it; never views, web or cli.
"""
