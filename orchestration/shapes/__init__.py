"""The JSON shape of every record (pydantic): the API's responses and every --json.

Imports resilience and the layers below; never the engine.
"""
