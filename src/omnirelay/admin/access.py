"""Who may call which admin operation.

The master key and the keys of users with the role `admin` may call every admin operation. A key
that belongs to a user with the role `user` may call the self-service operations (the route names in
`SELF_SERVICE`), and those operations show and change only that user's own objects: handlers ask
`own_scope` for the user they must restrict to, and `check_owner` before touching one object."""

from __future__ import annotations

from omnirelay.call import Call
from omnirelay.errors import NotFound, PermissionDenied
from omnirelay.policy.auth import Principal

# Route names (the third field of `omnirelay.app.ADMIN_ROUTES`) a user may call for itself.
SELF_SERVICE = frozenset(
    {"admin.keys", "admin.me", "admin.usage", "admin.logs", "admin.ip_audit", "admin.openapi"}
)


def admit(principal: Principal, route_name: str) -> None:
    """Refuse (403) a caller who may not call this admin route at all."""
    if principal.is_admin:
        return
    if route_name in SELF_SERVICE and principal.user_id is not None:
        return
    if route_name in SELF_SERVICE:
        raise PermissionDenied(
            "This endpoint needs the master key, an admin user's key or a key that belongs to a user.",
            code="admin_required",
        )
    raise PermissionDenied(
        "This endpoint needs the master key or an admin user's key.", code="admin_required"
    )


def own_scope(call: Call) -> str | None:
    """The user whose objects this caller may see, or None for an admin (everything)."""
    principal = call.principal
    if principal is None or principal.is_admin:
        return None
    if principal.user_id is None:  # `admit` lets no such caller through; be safe anyway
        raise PermissionDenied("This key belongs to no user.", code="admin_required")
    return principal.user_id


def check_owner(call: Call, owner: str | None, what: str) -> None:
    """A user may touch only its own objects; another user's object is reported as absent (404),
    so ids of other tenants cannot be probed."""
    scope = own_scope(call)
    if scope is not None and owner != scope:
        raise NotFound(f"No {what}.", code="not_found")
