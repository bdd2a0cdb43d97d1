"""Read-only views of stored runs in the shapes of the API and every --json, for the CLI and web.

Imports the engine and layers below; never web or cli.
"""
