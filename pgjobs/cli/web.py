"""`pgjobs web`: serve the JSON API, /metrics and the dashboard with uvicorn."""

from __future__ import annotations

import click
from click.core import ParameterSource

from pgjobs.cli import _app, _say_database, main, url_option
from pgjobs.core.errors import ConfigurationError


@main.command()
@click.argument("app_spec", metavar="APP")
@url_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar="PGJOBS_WEB_TOKEN",
    help="Bearer token for writes (default: $PGJOBS_WEB_TOKEN). Needed beyond loopback. "
    "Prefer $PGJOBS_WEB_TOKEN or --token-file: a command line is visible to other users.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="Read the bearer token from this file (its first line).",
)
@click.option("--protect-reads", is_flag=True, help="Reads need the token too.")
@click.option("--no-dashboard", is_flag=True, help="Serve the API and /metrics only.")
@click.option("--log-level", default="info", show_default=True)
def web(
    app_spec: str,
    url: str | None,
    host: str,
    port: int,
    token: str | None,
    token_file: str | None,
    protect_reads: bool,
    no_dashboard: bool,
    log_level: str,
) -> None:
    """Serve the JSON API, /metrics and the dashboard for APP with uvicorn."""
    from pgjobs.web.security import is_loopback_host

    token = _web_token(token, token_file)
    if not token and not is_loopback_host(host):
        raise click.UsageError(
            f"refusing to listen on {host} without a token: anyone who can reach it could "
            "enqueue, cancel and replay jobs. Set $PGJOBS_WEB_TOKEN (or --token-file), or listen "
            "on 127.0.0.1."
        )
    if protect_reads and not token:
        raise click.UsageError("--protect-reads needs a token ($PGJOBS_WEB_TOKEN or --token-file)")
    app = _app(app_spec, url)
    _say_database("web", app)
    try:
        import uvicorn

        from pgjobs.web import create_app
    except ImportError as exc:
        raise click.ClickException(f"{exc} (pip install 'pgjobs[web]')") from None
    api = create_app(
        app, token=token or None, protect_reads=protect_reads, dashboard=not no_dashboard
    )
    uvicorn.run(api, host=host, port=port, log_level=log_level.lower())


def _web_token(token: str | None, token_file: str | None) -> str | None:
    """The token of `pgjobs web`: from --token-file, $PGJOBS_WEB_TOKEN or --token."""
    source = click.get_current_context().get_parameter_source("token")
    typed = bool(token) and source is ParameterSource.COMMANDLINE
    if token_file is not None:
        if typed:
            raise click.UsageError("give the token with --token or --token-file, not both")
        try:
            with open(token_file, encoding="utf-8") as f:
                first = f.readline().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read --token-file {token_file}: {exc}") from None
        if not first:
            raise ConfigurationError(f"--token-file {token_file} holds no token on its first line")
        return first
    if typed:
        # Kept for scripts that pass it; but any user of this machine can read it (ps, /proc).
        click.echo(
            "Warning: --token on the command line is visible to other users of this machine "
            "(ps, /proc); set $PGJOBS_WEB_TOKEN or use --token-file instead",
            err=True,
        )
    return token or None
