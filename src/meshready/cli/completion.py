"""``meshready completion bash|zsh|fish``: the shell completion script, from click's own support.

    source <(meshready completion bash)                       # bash, this shell
    meshready completion zsh > "${fpath[1]}/_meshready"       # zsh
    meshready completion fish > ~/.config/fish/completions/meshready.fish

The script calls the program back with ``_MESHREADY_COMPLETE=<shell>_complete`` to complete
commands, options and choices (click.shell_completion).
"""

from __future__ import annotations

import click


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish) to load in your shell."""
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    cls = get_completion_class(shell)
    assert cls is not None  # every choice is one of click's shells
    prog = "meshready"
    script = cls(root.command, {}, prog, "_MESHREADY_COMPLETE").source()
    click.echo(script, nl=False)
