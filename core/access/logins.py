"""Who a login is: the role (and study scope) a password or an OIDC e-mail address grants.

Reads the plain mapping of ``.streamlit/secrets.toml`` (see ``secrets.toml.example``)::

    [passwords]            # role -> hash from `python -m core hash-password`
    coauthor = "scrypt$..."
    [study_scope]          # role -> the one study its logins open
    reviewer = "Pilot 2026"
    [roles]                # with an [auth] section: e-mail allow-lists for Streamlit's st.login
    owners = ["pi@example.org"]

The legacy single ``password`` (plain text) still opens the app, as a coauthor. With nothing
configured the app is open and everyone acts as owner (one person on a laptop).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.access import Role
from core.access.passwords import BadHash, check_hash, verify_password

LOGIN_ROLES = (Role.REVIEWER, Role.COAUTHOR, Role.OWNER)  # a login on two lists gets the lesser role
LEGACY_PASSWORD_ROLE = Role.COAUTHOR
EMAIL_LISTS = {"owners": Role.OWNER, "coauthors": Role.COAUTHOR, "reviewers": Role.REVIEWER}


@dataclass(frozen=True)
class LoginConfig:
    passwords: dict[Role, str] = field(default_factory=dict)
    legacy_password: str | None = None
    emails: dict[Role, frozenset[str]] = field(default_factory=dict)
    scopes: dict[Role, str] = field(default_factory=dict)
    oidc: bool = False
    problems: tuple[str, ...] = ()

    @property
    def is_open(self) -> bool:
        """No login configured: the app is open and everyone is owner."""
        return not (self.passwords or self.legacy_password or self.oidc)

    def role_for_password(self, entered: str) -> Role | None:
        """The role ``entered`` opens; every configured hash is checked so timing tells nothing."""
        matches = {role: verify_password(entered, stored) for role, stored in self.passwords.items()}
        if self.legacy_password is not None:
            legacy = hmac.compare_digest(entered.encode(), self.legacy_password.encode())
            matches[LEGACY_PASSWORD_ROLE] = matches.get(LEGACY_PASSWORD_ROLE, False) or legacy
        return next((role for role in LOGIN_ROLES if matches.get(role)), None)

    def role_for_email(self, email: str | None) -> Role | None:
        wanted = (email or "").strip().lower()
        return next((role for role in LOGIN_ROLES if wanted and wanted in self.emails.get(role, ())), None)

    def scope_of(self, role: Role) -> str | None:
        """The only study ``role``'s logins may open, or None for every study."""
        return self.scopes.get(role)


def read_config(secrets: Mapping[str, Any]) -> LoginConfig:
    """Parse the login sections of secrets.toml; mistakes become ``problems``, never a crash."""
    problems: list[str] = []
    passwords: dict[Role, str] = {}
    for name, stored in dict(secrets.get("passwords", {})).items():
        role = _login_role(name, "[passwords]", problems)
        if role is None:
            continue
        try:
            check_hash(stored)
        except BadHash as error:
            problems.append(f"[passwords] {name}: {error}")
            continue
        passwords[role] = stored
    emails = {
        EMAIL_LISTS[name]: frozenset(str(address).strip().lower() for address in addresses)
        for name, addresses in dict(secrets.get("roles", {})).items() if name in EMAIL_LISTS
    }
    problems += [f"[roles] {name}: use owners, coauthors or reviewers"
                 for name in dict(secrets.get("roles", {})) if name not in EMAIL_LISTS]
    scopes = {}
    for name, study in dict(secrets.get("study_scope", {})).items():
        role = _login_role(name, "[study_scope]", problems)
        if role is not None:
            scopes[role] = str(study)
    legacy = secrets.get("password")
    return LoginConfig(
        passwords=passwords, legacy_password=str(legacy) if legacy else None, emails=emails,
        scopes=scopes, oidc="auth" in secrets, problems=tuple(problems),
    )


def _login_role(name: str, section: str, problems: list[str]) -> Role | None:
    try:
        role = Role(name)
    except ValueError:
        role = None
    if role not in LOGIN_ROLES:
        problems.append(f"{section} {name}: use owner, coauthor or reviewer")
        return None
    return role
