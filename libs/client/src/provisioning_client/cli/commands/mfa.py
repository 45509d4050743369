"""``provctl mfa enroll|verify``: your own MFA enrolment."""

from __future__ import annotations

from dataclasses import dataclass

from ..context import Context, emit, secret
from ..exit_codes import ExitCode
from ..registry import Commands


@dataclass(frozen=True)
class EnrollArgs:
    password_stdin: bool


@dataclass(frozen=True)
class VerifyArgs:
    code: str


async def enroll(ctx: Context, args: EnrollArgs) -> ExitCode:
    password = secret("Password: ", args.password_stdin)
    return await emit(ctx, ctx.client.auth.mfa_enroll(password))


async def verify(ctx: Context, args: VerifyArgs) -> ExitCode:
    return await emit(ctx, ctx.client.auth.mfa_verify(args.code))


def register(cli: Commands) -> None:
    mfa = cli.group("mfa", "your own MFA enrolment")
    p = mfa.command("enroll", "start TOTP enrolment (re-checks your password)", enroll, EnrollArgs)
    p.add_argument("--password-stdin", action="store_true")
    mfa.command("verify", "activate MFA with a code", verify, VerifyArgs).add_argument("code")
