"""`emailexp create-user USERNAME --role admin|marketer|viewer`."""
from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext


@click.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "marketer", "viewer"]), default="marketer", show_default=True,
              help="admin and marketer can design and run experiments; viewer can only read.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input instead of prompting.")
@with_appcontext
def create_user_command(username: str, role: str, password_stdin: bool) -> None:
    """Create a web user who signs in with USERNAME and a password."""
    from emailexp.errors import EmailexpError
    from emailexp.extensions import db
    from emailexp.ingestion.users import create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(db.session, username, password, role)
        db.session.commit()
    except EmailexpError as exc:
        db.session.rollback()
        raise click.ClickException(exc.one_line()) from None
    click.echo(f"Created {user.role} {user.username!r}; sign in at /login")
