"""What keeps a run going and stoppable: breakers, retries, budgets, interventions, dead letters.

Imports core, store, rules, pluginhost, project and agents; never the engine.
"""
