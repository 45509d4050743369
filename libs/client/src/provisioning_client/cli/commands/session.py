"""``provctl login``, ``logout`` and ``whoami``."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import MfaRequiredError
from ..config import Credentials, delete_credentials
from ..context import Context, NoArgs, emit, prompt, secret, store_session
from ..exit_codes import ExitCode
from ..registry import Commands


@dataclass(frozen=True)
class LoginArgs:
    username: str | None
    password_stdin: bool
    mfa_code: str | None


async def login(ctx: Context, args: LoginArgs) -> ExitCode:
    ctx.persist = False  # the new session is stored below, with the new credentials
    client = ctx.client
    username = args.username or prompt("Username: ")
    password = secret("Password: ", args.password_stdin)
    try:
        session = await client.login(username, password, args.mfa_code)
    except MfaRequiredError:
        if args.mfa_code:
            raise
        session = await client.login(username, password, prompt("MFA code: ").strip())
    ctx.creds = Credentials(
        orchestrator_url=client.urls["orchestrator"],
        control_center_url=client.urls["control_center"],
        username=username,
    )
    path = store_session(ctx)
    user = session.user
    ctx.printer.emit(
        {
            "username": user.username if user else username,
            "roles": user.roles if user else [],
            "expires_at": session.expires_at,
            "credentials": str(path),
        }
    )
    return ExitCode.OK


async def logout(ctx: Context, args: NoArgs) -> ExitCode:
    try:
        message = await ctx.client.logout()
    finally:
        delete_credentials()
    ctx.printer.emit(message)
    return ExitCode.OK


async def whoami(ctx: Context, args: NoArgs) -> ExitCode:
    return await emit(ctx, ctx.client.me())


def register(cli: Commands) -> None:
    p = cli.command(
        "login", "log in (MFA code prompted when needed); stores the token", login, LoginArgs
    )
    p.add_argument("-u", "--username")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    p.add_argument("--mfa-code", help="TOTP code (prompted when required and not given)")
    cli.command("logout", "revoke the stored token and forget it", logout, NoArgs)
    cli.command("whoami", "show the logged-in user", whoami, NoArgs)
