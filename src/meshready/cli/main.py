"""Entry point: the click group, with errors turned into one line and an exit code."""

from __future__ import annotations

import os
import sys
import traceback

import click

from meshready import __version__
from meshready.cli import registry
from meshready.errors import MeshreadyError


class LazyGroup(click.Group):
    """Commands from the registry, imported when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in registry.COMMANDS if registry.available(name)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in registry.COMMANDS or not registry.available(cmd_name):
            return None
        return registry.load(cmd_name)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="meshready")
def cli() -> None:
    """Make Kubernetes nodes ready for service-mesh traffic interception.

    From a workstation, as a kubectl plugin: `kubectl meshready check node/NAME`.

    \b
    Exit codes (every command):
      0  ready / nothing wrong / done
      1  not ready, a problem found, an action or the cluster failed
      2  bad input or usage (the message names the file, option or value)
      3  internal error: a bug in meshready (MESHREADY_DEBUG=1 shows the traceback)
      130 interrupted
    """


def main(argv: list[str] | None = None) -> int:
    try:
        result = cli.main(args=argv, prog_name=_prog_name(), standalone_mode=False)
    except MeshreadyError as exc:
        if os.environ.get("MESHREADY_DEBUG"):
            # where the error came from: the causes it was raised from, then the one line
            traceback.print_exception(exc, file=sys.stderr)
        click.echo(f"meshready: error: {exc.one_line()}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Abort:
        click.echo("meshready: aborted", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("meshready: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so in one line; MESHREADY_DEBUG=1 shows the traceback
        if os.environ.get("MESHREADY_DEBUG"):
            raise
        click.echo(
            f"meshready: internal error: {type(exc).__name__}: {exc} (set MESHREADY_DEBUG=1 "
            "for a traceback and report it)",
            err=True,
        )
        return 3
    return result if isinstance(result, int) else 0


def _prog_name() -> str:
    name = sys.argv[0].rsplit("/", 1)[-1]
    return "kubectl meshready" if name.startswith("kubectl-") else "meshready"


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
