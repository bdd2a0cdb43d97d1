"""The bundled validators and notifiers, registered through entry points like any plugin."""
