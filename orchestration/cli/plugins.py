"""`orch plugins`: each loaded plugin, where it came from, what it provides, and load problems."""

import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from orchestration.cli.common import JsonOption, console, err_console, print_json

if TYPE_CHECKING:
    import pluggy

    from orchestration.pluginhost.hooks import Plugins

EXIT_LOAD_FAILED = 1
REGISTER_HOOKS = (
    "register_actions",
    "register_validators",
    "register_notifiers",
    "register_rule_functions",
)


def register(app: typer.Typer) -> None:
    """Add the `plugins` command to the `orch` application."""
    app.command("plugins")(plugins_command)


def plugins_command(json_output: JsonOption = False) -> None:
    """List the loaded plugins, where each came from and what it provides.

    For each plugin: its distribution and version (or its file), its action kinds, validators
    (stage, whether it takes a baseline), notifiers, rule functions and other hooks; then the
    problems of
    plugins that failed to register.
    """
    try:
        plugins = load_plugins()
    except Exception as error:  # an entry point that fails to import stops pluggy's loading
        message = f"the plugins could not be loaded: {type(error).__name__}: {error}"
        if json_output:
            print_json({"plugins": [], "problems": [message]})
        else:
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        raise typer.Exit(EXIT_LOAD_FAILED) from None
    listing = describe_plugins(plugins)
    if json_output:
        print_json(listing)
        return
    console.print(_table(listing["plugins"]))
    for problem in listing["problems"]:
        console.print(f"[yellow]problem:[/] {escape(problem)}", highlight=False)


def load_plugins() -> "Plugins":
    """The installed plugins (hooks is imported here: `orch --help` loads no plugin machinery)."""
    from orchestration.pluginhost.hooks import load_plugins as load_installed

    return load_installed()


# ---- what each plugin provides ------------------------------------------------------------


def describe_plugins(plugins: "Plugins") -> dict[str, Any]:
    """`{"plugins": [...], "problems": [...]}` as `orch plugins --json` prints it.

    Each plugin: `name`, `from` (the distribution and version, else the file), `distribution`
    (`{"name", "version"}` or null), `module`, `file`, `actions` (`name`, `description`,
    `active`: false when a later plugin's kind of the same name replaced it), `validators`
    (`name`, `stage`,
    `baseline`, `description`, `active`: false when a later plugin's validator of the same name
    replaced it), `notifiers` and `rule_functions` (names) and `hooks` (the other hooks it
    implements: events and `override_decision`).
    """
    from orchestration.extension import ActionKind, Notifier, Validator
    from orchestration.pluginhost.hooks import action_kind_problem

    manager = plugins.manager
    distributions = {id(p): d for p, d in manager.list_plugin_distinfo()}
    actions = {  # kinds refused at registration are listed under the problems only
        name: [kind for kind in kinds if action_kind_problem(kind) is None]
        for name, kinds in _registered(manager, "register_actions", ActionKind).items()
    }
    validators = _registered(manager, "register_validators", Validator)
    notifiers = _registered(manager, "register_notifiers", Notifier)
    functions = _rule_functions(manager)
    active = {v.name: name for name, found in validators.items() for v in found}  # last wins
    active_kinds = {a.name: name for name, found in actions.items() for a in found}
    rows = []
    for name, plugin in manager.list_name_plugin():
        if plugin is None:  # blocked: pluggy keeps the name so that it is never loaded
            continue
        dist = distributions.get(id(plugin))
        file = _file_of(plugin)
        rows.append(
            {
                "name": name,
                "from": f"{dist.project_name} {dist.version}" if dist else file,
                "distribution": (
                    {"name": dist.project_name, "version": dist.version} if dist else None
                ),
                "module": _module_of(plugin),
                "file": file,
                "actions": [
                    {
                        "name": a.name,
                        "description": a.description,
                        "active": active_kinds.get(a.name) == name,
                    }
                    for a in actions.get(name, [])
                ],
                "validators": [
                    {
                        "name": v.name,
                        "stage": v.stage,
                        "baseline": v.baseline is not None,
                        "description": v.description,
                        "active": active.get(v.name) == name,
                    }
                    for v in validators.get(name, [])
                ],
                "notifiers": [n.name for n in notifiers.get(name, [])],
                "rule_functions": sorted(functions.get(name, [])),
                "hooks": sorted(
                    caller.name
                    for caller in manager.get_hookcallers(plugin) or []
                    if caller.name not in REGISTER_HOOKS
                ),
            }
        )
    return {"plugins": rows, "problems": list(plugins.problems)}


def _registered(manager: "pluggy.PluginManager", hook: str, kind: type) -> dict[str, list[Any]]:
    """Each plugin's valid registrations, asked again in load order (problems are on Plugins)."""
    found: dict[str, list[Any]] = {}
    for impl in getattr(manager.hook, hook).get_hookimpls():
        try:
            value = impl.function()
        except Exception:
            continue
        if isinstance(value, list | tuple):
            found[impl.plugin_name] = [item for item in value if isinstance(item, kind)]
    return found


def _rule_functions(manager: "pluggy.PluginManager") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for impl in manager.hook.register_rule_functions.get_hookimpls():
        try:
            value = impl.function()
        except Exception:
            continue
        if hasattr(value, "items"):
            found[impl.plugin_name] = [str(k) for k, f in value.items() if callable(f)]
    return found


def _module_of(plugin: object) -> str:
    if inspect.ismodule(plugin):
        return plugin.__name__
    kind = type(plugin)
    return f"{kind.__module__}.{kind.__qualname__}"


def _file_of(plugin: object) -> str:
    source = plugin if inspect.ismodule(plugin) else type(plugin)
    try:
        return inspect.getsourcefile(source) or inspect.getfile(source)
    except (TypeError, OSError):
        return ""


# ---- the table ------------------------------------------------------------------------------


def _provides(row: dict[str, Any]) -> Iterable[str]:
    for a in row["actions"]:
        yield f"action kind {a['name']}" + ("" if a["active"] else " (replaced by a later plugin)")
    for v in row["validators"]:
        extras = [v["stage"]] + (["baseline"] if v["baseline"] else [])
        shadowed = "" if v["active"] else ", replaced by a later plugin"
        yield f"validator {v['name']} ({', '.join(extras)}{shadowed})"
    for name in row["notifiers"]:
        yield f"notifier {name}"
    for name in row["rule_functions"]:
        yield f"rule function {name}()"


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="plugins")
    for column in ("plugin", "from", "provides", "hooks"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            escape(row["name"]),
            escape(row["from"]),
            escape("\n".join(_provides(row))) or "-",
            escape("\n".join(row["hooks"])) or "-",
        )
    return table
